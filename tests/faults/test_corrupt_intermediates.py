"""A corrupt or truncated file between two stages: the stage that reads it stops with one line naming it.

`tests/test_bad_data.py` covers the user's own input files and `tests/serving` a model bundle tampered with in the
registry; these are the files the stages hand each other. `dvc repro` would notice the changed output and remake
it, so each reading stage runs its own command from `dvc.yaml`, as DVC would start it, on a copy of a finished
project.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from tests.asserts import assert_one_error
from tests.faults.helpers import (
    STAGE_OUTS, copy_project, registered_versions, runs, snapshot, temp_leftovers,
)
from tests.project import dvc, run

pytestmark = pytest.mark.slow

PARQUET = "expected a Parquet file, got an unreadable one"
JSON = "expected valid JSON, got a corrupt file"
FOREIGN = "expected the content the pipeline writes there, got content it cannot use"
CASES = [  # (file, the stage that reads it, how it is damaged, what the one line says after the file's name)
    ("data/raw/data.parquet", "split", "truncate", PARQUET),
    ("data/raw/schema.json", "split", "truncate", JSON),
    ("data/split/train.parquet", "clean", "truncate", PARQUET),
    ("data/clean/val.parquet", "scale", "garbage", PARQUET),
    ("data/clean/imputer.json", "scale", "truncate", JSON),
    ("data/scaled/encoder.json", "train", "truncate", JSON),
    ("data/scaled/train.parquet", "train", "truncate", PARQUET),
    ("models/model/weights.safetensors", "evaluate", "truncate", "expected a safetensors file"),
    ("models/model/net.json", "evaluate", "truncate", JSON),
    ("models/train.json", "evaluate", "truncate", JSON),
    ("models/model/encoder.json", "evaluate", "garbage", JSON),
    ("models/model/decision.json", "evaluate", "truncate", JSON),
    ("models/model/inference.json", "evaluate", "truncate", JSON),
    # valid JSON, but not what the pipeline wrote there (a hand edit, another tool's file): no KeyError traceback
    ("data/raw/schema.json", "split", "foreign", f"{FOREIGN} (KeyError: no key 'target')"),
    ("data/clean/imputer.json", "scale", "foreign", f"{FOREIGN} (KeyError:"),
    ("data/clean/report.json", "train", "foreign", f"{FOREIGN} (KeyError: no key 'class_weight')"),
    ("data/scaled/encoder.json", "train", "foreign", f"{FOREIGN} (KeyError: no key 'features')"),
    ("data/clean/imputer.json", "train", "foreign", f"{FOREIGN} (KeyError:"),
    ("models/model/net.json", "evaluate", "foreign", "model.kind: expected one of"),
    ("models/model/encoder.json", "evaluate", "foreign", f"{FOREIGN} (KeyError: no key 'features')"),
    ("models/train.json", "evaluate", "foreign", f"{FOREIGN} (KeyError: no key 'run_id')"),
    ("models/model/decision.json", "evaluate", "foreign", f"{FOREIGN} (KeyError: no key 'rule')"),
    ("models/model/inference.json", "evaluate", "foreign", f"{FOREIGN} (KeyError: no key 'chunk')"),
]
IDS = [f"{name}-{how}-{reader}" for name, reader, how, _ in CASES]


@pytest.fixture(scope="module")
def finished(scaled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline run once (one registered version)."""
    project = copy_project(scaled, tmp_path_factory.mktemp("finished"))
    dvc(project, "repro")
    return project


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.unlink()  # a new file: never write through to DVC's cache
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"\x00garbage\xff" * 16,
               "foreign": b'{"written_by": "another tool"}\n'}
    path.write_bytes(damaged[how])


@pytest.mark.parametrize(("name", "reader", "how", "expected"), CASES, ids=IDS)
def test_a_damaged_intermediate_stops_its_reader_with_one_line(tmp_path: Path, finished: Path, name: str,
                                                                reader: str, how: str, expected: str) -> None:
    project = copy_project(finished, tmp_path / "p")
    _damage(project / name, how)
    outs = snapshot(project, STAGE_OUTS[reader])
    versions = len(registered_versions(project))
    command = shlex.split(yaml.safe_load((project / "dvc.yaml").read_text())["stages"][reader]["cmd"])

    done = run(command, project, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    line = assert_one_error(done, reader)
    assert line.startswith(f"{reader}: error: {name}: {expected}"), line
    assert snapshot(project, STAGE_OUTS[reader]) == outs  # the reader's previous outputs are untouched
    assert temp_leftovers(project) == []
    assert all(r.info.status != "RUNNING" for r in runs(project))
    assert len(registered_versions(project)) == versions
