"""prepare: the clean and scale stages' outputs for a data configuration, built once, reused, safe to race."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.tuning import prepare as prep
from pipeline.tuning.prepare import Prepared, build_once, data_key, data_params, prepare, workspace_prepared
from tests.factories import MakeParams
from tests.tuning.inputs import ROOT, images, params_of, project, run_stage, sequences, table, write_params

DATASETS = {
    "table": (table, "species", {}),
    "images": (images, "y", {"clean": {"imbalance": "upsample"}}),
    "sequences": (sequences, "y", {"data": {"sequence": {"id": "series", "time": "step"}}}),
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stamps(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project of :func:`table`'s rows after ingest and split (not to be written into)."""
    root = tmp_path_factory.mktemp("tabular")
    project(root, table(), "species")
    return root


def _prepare(root: Path, cache: Path, params: Params | None = None) -> Prepared:
    return prepare(params or params_of(root), root / "data" / "raw", root / "data" / "split", cache)


def test_data_key_covers_exactly_what_dvc_yaml_lists_for_clean_and_scale(make_params: MakeParams) -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(data_params(make_params())) == set(stages["clean"]["params"]) | set(stages["scale"]["params"])


def test_data_key_follows_the_data_keys_alone(make_params: MakeParams) -> None:
    key = data_key(make_params())
    assert len(key) == 16 and int(key, 16) >= 0
    assert data_key(make_params()) == key  # stable
    same = [make_params(train={"lr": 0.5, "batch_size": 8}), make_params(model={"dropout": 0.3}),
            make_params(split={"val": 0.3}), make_params(evaluate={"baseline_rows": 10})]
    assert {data_key(p) for p in same} == {key}
    other = [make_params(seed=7), make_params(clean={"numeric": "mean"}), make_params(clean={"indicators": True}),
             make_params(scale={"method": "minmax"}), make_params(scale={"encoding": "ordinal"})]
    assert len({data_key(p) for p in other} | {key}) == len(other) + 1


@pytest.mark.parametrize("kind", DATASETS)
def test_prepare_writes_byte_for_byte_what_the_clean_and_scale_stages_write(kind: str, tmp_path: Path) -> None:
    make, target, overrides = DATASETS[kind]
    params = project(tmp_path, make(), target, **overrides)
    run_stage(tmp_path, "clean")
    run_stage(tmp_path, "scale")
    got = _prepare(tmp_path, tmp_path / "cache", params)
    assert got.raw == tmp_path / "data" / "raw" and got.split == tmp_path / "data" / "split"
    assert got.clean.parent == got.scaled.parent and got.clean.parent.parent == tmp_path / "cache"
    assert _files(got.clean) == _files(tmp_path / "data" / "clean")
    assert _files(got.scaled) == _files(tmp_path / "data" / "scaled")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [got.clean.parent.name]  # no temporaries left


def test_prepare_reuses_a_prepared_folder_without_recomputing(tabular: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    first = _prepare(tabular, tmp_path)
    stamps = _stamps(first.clean.parent)

    def refuse(*args: object) -> None:
        raise AssertionError("cleaned again")

    monkeypatch.setattr(prep, "clean_folder", refuse)
    trial = params_of(tabular).model_copy(update={"train": params_of(tabular).train.model_copy(update={"lr": 0.5})})
    assert _prepare(tabular, tmp_path) == first == _prepare(tabular, tmp_path, trial)  # other train keys: same data
    assert _stamps(first.clean.parent) == stamps


def test_prepare_recomputes_when_a_clean_or_scale_key_changes(tabular: Path, tmp_path: Path) -> None:
    params = params_of(tabular)
    base = _prepare(tabular, tmp_path)
    filled = params.model_copy(update={"clean": params.clean.model_copy(update={"indicators": True})})
    minmax = params.model_copy(update={"scale": params.scale.model_copy(update={"method": "minmax"})})
    others = [_prepare(tabular, tmp_path, p) for p in (filled, minmax)]
    assert len({base.clean.parent, *(o.clean.parent for o in others)}) == 3
    assert _files(others[0].clean) != _files(base.clean)  # indicator columns
    assert _files(others[1].clean) == _files(base.clean) and _files(others[1].scaled) != _files(base.scaled)


def test_prepare_follows_the_split_by_content_not_by_place_or_time(tmp_path: Path) -> None:
    params = project(tmp_path, table(), "species")
    raw, split = tmp_path / "data" / "raw", tmp_path / "data" / "split"
    first = prepare(params, raw, split, tmp_path / "cache")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in _files(split).items():  # same bytes, another folder, new times
        (copy / name).write_bytes(data)
    assert prepare(params, raw, copy, tmp_path / "cache").clean == first.clean
    write_params(tmp_path, data={"source": "inputs/data.csv", "target": "species"}, split={"val": 0.3})
    run_stage(tmp_path, "split")  # another split, the same data params
    again = prepare(params, raw, split, tmp_path / "cache")
    assert again.clean != first.clean
    assert _files(again.clean) != _files(first.clean)


def test_a_builder_that_loses_the_race_uses_the_winners_folder(tmp_path: Path) -> None:
    final = tmp_path / "key"

    def ready(folder: Path) -> bool:
        return (folder / "done").is_file()

    def winner(folder: Path) -> None:
        (folder / "done").write_text("winner")

    def loser(folder: Path) -> None:  # another process finishes first, while this one is still building
        build_once(final, winner, ready)
        (folder / "done").write_text("loser")

    assert build_once(final, loser, ready) == final
    assert (final / "done").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # the loser's copy discarded


def test_an_outdated_folder_is_replaced_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "folds"
    final.mkdir()
    (final / "old").write_text("drawn from other inputs")

    def ready(folder: Path) -> bool:
        return (folder / "new").is_file()

    build_once(final, lambda folder: (folder / "new").write_text("x"), ready)
    assert [p.name for p in final.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["folds"]

    def fail(folder: Path) -> None:
        (folder / "part").write_text("half")
        raise PipelineError("bad input")

    with pytest.raises(PipelineError, match="bad input"):
        build_once(tmp_path / "other", fail, ready)
    assert [p.name for p in tmp_path.iterdir()] == ["folds"]


def test_a_killed_builders_temporary_is_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    killed = tmp_path / f".key.building-{dead.stdout.strip()}-abc"
    live = tmp_path / f".key.building-{os.getpid()}-def"  # this process: alive, as a builder at work is
    for folder in (killed, live):
        folder.mkdir()
        (folder / "done").write_text("half-built")
    build_once(tmp_path / "key", lambda folder: (folder / "done").write_text("built"),
               lambda folder: (folder / "done").is_file())
    assert (tmp_path / "key" / "done").read_text() == "built"  # never the half-built copies
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["key", live.name])


RACER = """
import sys, time
from pathlib import Path
import pipeline.tuning.prepare as prep
from tests.tuning.inputs import params_of

root, cache, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real = prep.clean_folder

def together(*args):
    # both processes are building before either renames: one wins the rename, the other loses it
    (cache.parent / f"building-{me}").touch()
    deadline = time.monotonic() + 60
    while len(list(cache.parent.glob("building-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return real(*args)

prep.clean_folder = together
print(prep.prepare(params_of(root), root / "data" / "raw", root / "data" / "split", cache).scaled)
"""


def test_two_processes_preparing_one_key_at_once_end_with_one_valid_folder(tabular: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tabular), str(cache), str(i)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["building-0", "building-1", "cache"]  # both built
    (entry,) = cache.iterdir()  # one folder, no temporaries
    assert {out.strip() for out, _ in outputs} == {str(entry / "scaled")}
    reference = _prepare(tabular, tmp_path / "reference")
    assert _files(entry) == _files(reference.clean.parent)


def test_the_workspace_folders_are_the_dvc_stages_outputs(tmp_path: Path) -> None:
    assert workspace_prepared(tmp_path) == Prepared(tmp_path / "data" / "raw", tmp_path / "data" / "split",
                                                    tmp_path / "data" / "clean", tmp_path / "data" / "scaled")
