"""Scoring a configuration: the runner that logs each epoch to one
MLflow run (a real SQLite store) and reports the first network's epochs to the pruner."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.training.transfer import Parent
from pipeline.tuning.prepare import prepare
from pipeline.tuning.scoring import EpochRunner, fit_and_score
from tests.tuning.inputs import project, table


def _epochs(sink, n: int = 3) -> str:
    for epoch in range(n):
        sink({"train/loss": 1.0 / (epoch + 1), "val/loss": 2.0 / (epoch + 1)}, epoch)
    return "fit"


def test_each_restart_logs_to_the_run_and_only_the_first_reports(tmp_path: Path, make_params) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        run_id = MlflowClient().create_run("0").info.run_id
        reported: list[int] = []
        runner = EpochRunner(run_id, lambda metrics, epoch: reported.append(epoch))
        params = make_params()
        assert runner(0, params, _epochs) == "fit"
        runner(1, params, _epochs)
        metrics = MlflowClient().get_run(run_id).data.metrics
        history = MlflowClient().get_metric_history(run_id, "restart1/val/loss")
    finally:
        mlflow.set_tracking_uri(None)
    assert reported == [0, 1, 2]
    assert set(metrics) == {"train/loss", "val/loss", "restart1/train/loss", "restart1/val/loss"}
    assert [m.step for m in history] == [0, 1, 2]


def test_a_stopped_training_keeps_the_epochs_it_finished(tmp_path: Path, make_params) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")

    def prune_at_two(metrics: dict[str, float], epoch: int) -> None:
        if epoch == 2:
            raise RuntimeError("pruned")

    try:
        run_id = MlflowClient().create_run("0").info.run_id
        with pytest.raises(RuntimeError, match="pruned"):
            EpochRunner(run_id, prune_at_two)(0, make_params(), lambda sink: _epochs(sink, 5))
        history = MlflowClient().get_metric_history(run_id, "val/loss")
    finally:
        mlflow.set_tracking_uri(None)
    assert [m.step for m in history] == [0, 1, 2]


def test_a_configuration_started_from_a_network_trains_only_what_is_not_frozen(tmp_path: Path) -> None:
    """What a search trial or a cross-validation fold does with ``train.init_from``: the network handed in is
    loaded and its encoder held, as in the train stage (without it, every weight would be trained from scratch)."""
    params = project(tmp_path, table(), "species", model={"hidden": [8]},
                     train={"max_epochs": 3, "early_stopping": {"patience": 3}})
    prepared = prepare(params, tmp_path / "data" / "raw", tmp_path / "data" / "split", tmp_path / "cache")
    source = fit_and_score(params, prepared, tmp_path / "source").result
    tuned_params = params.model_copy(update={"train": params.train.model_copy(update={"init_from": 1,
                                                                                      "freeze": "encoder"})})
    tuned = fit_and_score(tuned_params, prepared, tmp_path / "tuned", parent=Parent("models:/t/1", source.spec,
                                                                                    source.state)).result
    changed = [k for k in source.state if not torch.equal(source.state[k], tuned.state[k])]
    output = list(source.state)[-1].rsplit(".", 1)[0]  # the output layer: the last in the network's order
    assert changed == [f"{output}.weight", f"{output}.bias"], changed
