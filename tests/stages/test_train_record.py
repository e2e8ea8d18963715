"""The train stage's MLflow records of a fit: every epoch's metrics reach the run, in batches, also when the
training fails midway."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.stages.train_record import TrackedRestarts
from pipeline.training.fit import FitResult, fit
from tests.factories import MakeParams, ScaledData

TRAIN = {"max_epochs": 6, "batch_size": 8}


class Crash(RuntimeError):
    """What the probe raises: a training that fails after some epochs, not in the metrics' sink."""


class CrashAt(L.Callback):
    """Fail at the end of ``epoch``, after the epoch history handed that epoch to the sink."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise Crash(f"crashed at epoch {self.epoch}")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[MlflowClient, str]:
    """A fresh SQLite store in ``tmp_path`` and an experiment in it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.configure(tmp_path)
    return client, tracking.experiment_id(client, "records", tmp_path)


def _run(experiment: str, params, scaled: Path, probes: tuple = ()) -> tuple[str, FitResult | None]:
    """Fit inside a tracked run as the stage does; the run id and the result (None when the fit raised)."""
    def fit_one(sink) -> FitResult:
        return fit(params, scaled, n_outputs=3, sink=sink, probes=probes)

    with tracking.tracked_run(experiment_id=experiment) as run:
        return run.info.run_id, TrackedRestarts(experiment, run.info.run_id, 1, "classification")(0, params, fit_one)


def test_every_epoch_of_a_fit_is_in_the_run_with_the_values_of_the_history(
        store: tuple[MlflowClient, str], scaled_data: ScaledData, make_params: MakeParams) -> None:
    client, experiment = store
    run_id, result = _run(experiment, make_params(train=TRAIN), scaled_data("table", train=48, val=16))
    assert result.epochs == 6 and len(result.history) == 6
    for name in result.history[0]:
        if name == "epoch":
            continue
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert points == [(row["epoch"], row[name]) for row in result.history], name
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_crash_mid_training_leaves_every_epoch_before_it_recorded_and_the_run_failed(
        store: tuple[MlflowClient, str], scaled_data: ScaledData, make_params: MakeParams) -> None:
    client, experiment = store
    with pytest.raises(Crash):
        _run(experiment, make_params(train=TRAIN), scaled_data("table", train=48, val=16), probes=(CrashAt(3),))
    (run,) = client.search_runs([experiment])
    assert run.info.status == "FAILED"
    for name in ("val/loss", "train/loss", "lr"):  # epochs 0-3 were handed to the sink; epoch 3 is the crash's
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, name)) == [0, 1, 2, 3], name
    assert mlflow.active_run() is None


def test_the_buffer_writes_once_writing_costs_little_of_the_time_since(
        store: tuple[MlflowClient, str]) -> None:
    client, experiment = store
    run = client.create_run(experiment)
    buffer = tracking.MetricsBuffer(run.info.run_id)
    buffer({"a": 1.0}, 0)  # the first step is written at once (nothing is known of the store's speed yet)
    assert buffer.pending == [] and buffer._next > 0
    buffer({"a": 2.0}, 1)  # right after: held, since writing now would cost far more than 2% of the time
    assert [m.step for m in buffer.pending] == [1]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "a")] == [0]
    buffer.flush()
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "a")) == [0, 1]
    assert buffer.pending == []
