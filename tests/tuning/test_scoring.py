"""Scoring a configuration: the runner that logs each epoch to one
MLflow run (a real SQLite store) and reports the first network's epochs to the pruner."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline.tuning.scoring import EpochRunner


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
