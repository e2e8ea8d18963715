"""The resolve stage: the version ``train.init_from`` names, pinned in a file train depends on, on a real SQLite
tracking store and registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.serving.source import pinned
from pipeline.stages.resolve import NONE, pin, read_pin
from tests.factories import params_doc
from tests.serving.test_source import _version, client  # noqa: F401 - the store fixture

NAME = "digits-cnn"


def _params(root: Path, init_from: str | int | None) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params_doc(train={"init_from": init_from}, tracking={"model_name": NAME})))
    return path


def test_a_training_from_random_weights_pins_none_without_mlflow_or_a_store(tmp_path: Path) -> None:
    _params(tmp_path, None)
    code = ("import sys; from pathlib import Path; from pipeline.stages.resolve import pin; "
            "print(pin(Path('params.yaml'), Path.cwd())); assert 'mlflow' not in sys.modules, 'mlflow imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'init_from': None}"
    assert not (tmp_path / "mlflow.db").exists()


def test_an_alias_is_pinned_to_its_version_and_the_record_changes_only_when_it_moves(
        client: MlflowClient, tmp_path: Path) -> None:  # noqa: F811
    first = _version(client, tmp_path, NAME, {"w": torch.zeros(2)})
    second = _version(client, tmp_path, NAME, {"w": torch.ones(2)})
    client.set_registered_model_alias(NAME, "base", first)
    params = _params(tmp_path, "base")
    record = pin(params, tmp_path)
    assert record == {"init_from": "base", "uri": f"models:/{NAME}/{first}", "name": NAME, "version": first,
                      "run_id": client.get_model_version(NAME, first).run_id}
    assert pin(params, tmp_path) == record  # nothing moved: the same record, so the same file and hash for DVC
    client.set_registered_model_alias(NAME, "base", second)
    moved = pin(params, tmp_path)
    assert (moved["version"], moved["run_id"]) == (second, client.get_model_version(NAME, second).run_id)


def test_an_unknown_alias_is_refused_by_resolve(client: MlflowClient, tmp_path: Path) -> None:  # noqa: F811
    _version(client, tmp_path, NAME, {"w": torch.zeros(2)})
    with pytest.raises(PipelineError, match=r"^train.init_from = 'bsae': model 'digits-cnn' has no alias 'bsae' in "
                                            r"the registry; expected a registered version \(see: models show\)$"):
        pin(_params(tmp_path, "bsae"), tmp_path)


def test_no_store_yet_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"^train.init_from = 'base': .*mlflow.db: no MLflow store here"):
        pin(_params(tmp_path, "base"), tmp_path)


@pytest.mark.parametrize(("held", "now"), [
    (NONE, "base"),  # train.init_from edited, then `dvc repro -s train`: resolve has not run
    ({"init_from": "base", "uri": "models:/m/1", "name": "m", "version": "1", "run_id": "r"}, None),
    ({"init_from": "base", "uri": "models:/m/1", "name": "m", "version": "1", "run_id": "r"}, "champion"),
    ({"init_from": "base"}, "base"),  # not a record resolve writes
    (["base"], "base"),
])
def test_train_refuses_a_record_resolve_did_not_write_for_these_params(tmp_path: Path, held: object,
                                                                      now: str | None) -> None:
    write_json(tmp_path / "init_from.json", held)
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'init_from.json'}: pins train.init_from = .*, params.yaml "
                                            rf"has {now!r}; expected the resolve stage's record for these params"):
        read_pin(tmp_path / "init_from.json", now)


def test_train_reads_back_the_record_for_these_params(tmp_path: Path) -> None:
    record = {"init_from": 3, "uri": "models:/m/3", "name": "m", "version": "3", "run_id": "r"}
    write_json(tmp_path / "init_from.json", record)
    assert read_pin(tmp_path / "init_from.json", 3) == record
    write_json(tmp_path / "init_from.json", NONE)
    assert read_pin(tmp_path / "init_from.json", None) is None


def test_a_pinned_version_now_of_another_run_is_refused(client: MlflowClient, tmp_path: Path) -> None:  # noqa: F811
    version = _version(client, tmp_path, NAME, {"w": torch.zeros(2)})
    record = pin(_params(tmp_path, int(version)), tmp_path)
    assert pinned(client, record, int(version)).run_id == record["run_id"]
    with pytest.raises(PipelineError, match=rf"^train.init_from = {version}: models:/{NAME}/{version} is now run "
                                            rf"\w+, resolved as run gone; expected the same version"):
        pinned(client, {**record, "run_id": "gone"}, int(version))
