"""train: the stage's pure function on a tiny hand-made scaled dataset, with no MLflow run and no writes but its
checkpoints; the record it leaves in ``train.json``."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.preprocess.schema import Schema
from pipeline.stages.train import TrainFolders, TrainResult, train
from pipeline.stages.train_record import check_copied_state, train_info
from pipeline.training.fit import FitResult, fit
from tests.factories import TABLE_FEATURES, MakeParams, ScaledData

FEATURES = TABLE_FEATURES  # scaled_data("table")'s columns
PRIOR = {"0": 0.5, "1": 0.3, "2": 0.2}
TRAIN = {"max_epochs": 4, "batch_size": 8}  # this file's trainings: four epochs, in small batches


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, scaled_data: ScaledData) -> Path:
    """ingest's, clean's and scale's outputs for a three-class table whose features are already scaled."""
    root = tmp_path_factory.mktemp("data")
    raw, clean = root / "raw", root / "clean"
    for folder in (raw, clean):
        folder.mkdir()
    write_json(raw / "schema.json", Schema("species", tuple((f, "numeric") for f in FEATURES)).to_dict())
    write_json(clean / "report.json", {"class_weight": None, "prior_correction": False,
                                       "class_prior": {"natural": PRIOR, "trained": PRIOR}})
    shutil.copytree(scaled_data("table", train=48, val=16), root / "scaled")  # a copy: train may write beside it
    return root


def _folders(data: Path, checkpoints: Path) -> TrainFolders:
    return TrainFolders(data / "raw", data / "clean", data / "scaled", checkpoints)


@pytest.fixture(scope="module")
def three(data: Path, tmp_path_factory: pytest.TempPathFactory,
          make_params: MakeParams) -> tuple[TrainResult, Path, set[Path]]:
    """Three restarts (seed 1: the middle one is best) trained with no MLflow run, from a scratch working directory: the result, that directory,
    and every file written anywhere under it or under the data."""
    work = tmp_path_factory.mktemp("work")
    before = _files(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)  # a stray MLflow store or log would land here
        assert mlflow.active_run() is None
        result = train(make_params(seed=1, train={**TRAIN, "restarts": 3}), _folders(data, work / "checkpoints"))
        assert mlflow.active_run() is None
    return result, work, (_files(data) - before) | _files(work)


def test_restarts_train_from_their_own_seeds_and_the_best_on_validation_is_kept(
        three: tuple[TrainResult, Path, set[Path]]) -> None:
    result, _, _ = three
    assert len(result.fits) == 3 and result.seeds == [1, 2, 3]
    best = [r.best_value for r in result.fits]
    assert best.index(min(best)) == 1  # neither the first nor the last: the choice below is a real one
    assert result.chosen == 1  # val/loss: lowest wins
    assert result.selected == result.chosen and not result.ensemble
    assert result.spec == result.kept.spec and result.state is result.kept.state_dict
    assert set(result.members) == {f"members.{i}.{k}" for i in range(3) for k in result.fits[i].state_dict}
    assert result.kept.max_epochs == 4 and result.inputs.task == "classification" and result.inputs.n_outputs == 3
    assert result.seconds > 0


def test_train_writes_only_its_checkpoints_and_opens_no_mlflow_run(three: tuple[TrainResult, Path, set[Path]]) -> None:
    _, work, written = three
    assert written, "the restarts saved no checkpoint"
    assert all(p.is_relative_to(work / "checkpoints") for p in written), sorted(written)
    assert {p.relative_to(work / "checkpoints").parts[0] for p in written} == {"restart-0", "restart-1", "restart-2"}


def test_one_restart_is_plain_fit_in_the_checkpoints_folder(data: Path, tmp_path: Path,
                                                           make_params: MakeParams) -> None:
    params = make_params(train=TRAIN)
    result = train(params, _folders(data, tmp_path / "trained"))
    direct = fit(params, data / "scaled", n_outputs=3, checkpoints=tmp_path / "direct")
    assert len(result.fits) == 1 and result.chosen == 0 and result.selected == 0 and result.seeds == [42]
    for key in direct.state_dict:  # the one path through restarts gives what fit alone gives
        assert torch.equal(result.state[key], direct.state_dict[key]), key
    assert result.kept.history == direct.history
    assert (tmp_path / "trained" / "last.ckpt").is_file() and not (tmp_path / "trained" / "restart-0").exists()


def test_an_ensemble_is_every_restart_averaged(data: Path, tmp_path: Path, make_params: MakeParams) -> None:
    result = train(make_params(train={**TRAIN, "restarts": 2, "ensemble": True}), _folders(data, tmp_path))
    assert result.selected == "ensemble"
    assert result.spec == {"kind": "ensemble", "size": 2, "task": "classification", "member": result.kept.spec}
    assert result.state is result.members and len(result.members) == 2 * len(result.kept.state_dict)


def test_a_runner_runs_each_restart_and_gets_every_epoch(data: Path, tmp_path: Path, make_params: MakeParams) -> None:
    seen: list[tuple[int, int]] = []
    epochs: dict[int, list[int]] = {}

    def runner(index: int, settings: Params, fit_one) -> FitResult:  # what the stage's MLflow runner does
        seen.append((index, settings.seed))
        return fit_one(lambda metrics, epoch: epochs.setdefault(index, []).append(epoch))

    result = train(make_params(train={**TRAIN, "restarts": 2}), _folders(data, tmp_path), runner)
    assert seen == [(0, 42), (1, 43)]
    assert [len(epochs[i]) for i in (0, 1)] == [r.epochs for r in result.fits]


def test_train_json_records_the_kept_restart_and_every_restart(three: tuple[TrainResult, Path, set[Path]]) -> None:
    result, _, _ = three
    info = train_info(result, "parent", "7", ["r0", "r1", "r2"])
    assert list(info) == ["run_id", "experiment_id", "experiment", "device", "epochs", "best_epoch", "best_val_loss",
                          "resumed_from_epoch", "lr_find", "monitor", "max_epochs", "patience", "weight_decay",
                          "selected", "restarts", "history"]
    assert info["run_id"] == "parent" and info["selected"] == result.chosen
    assert info["best_val_loss"] == min(r["best_value"] for r in info["restarts"])
    assert [(r["seed"], r["run_id"]) for r in info["restarts"]] == [(1, "r0"), (2, "r1"), (3, "r2")]
    assert info["history"] == result.kept.history


def test_an_imputer_the_bundle_could_not_load_stops_train_naming_it(tmp_path: Path) -> None:
    write_json(tmp_path / "imputer.json", {"written_by": "another tool"})
    with pytest.raises(PipelineError, match="imputer.json: expected the content the pipeline writes there"):
        check_copied_state(tmp_path)
