"""Data-parallel training for real: `dvc repro` with `train.devices: 2` on CPU starts two processes (gloo), and
their training matches one process on the same global batch, with one MLflow run and one set of outputs.

Dropout is off because each process draws dropout masks for its own rows only; class weights are on, so the
shares of a weighted loss are checked to add up to the whole batch's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.project import dvc, make_project, set_params, stages_run

pytestmark = pytest.mark.slow


def test_two_cpu_processes_train_as_one_process_does_on_the_same_global_batch(tmp_path: Path) -> None:
    root = make_project(tmp_path, train__max_epochs=8, train__accelerator="cpu", model__dropout=0.0,
                        clean__imbalance="class_weight", train__batch_size=32)
    dvc(root, "repro")
    single = json.loads((root / "models/train.json").read_text())
    single_metrics = json.loads((root / "reports/metrics.json").read_text())

    set_params(root, train__devices=2)
    rerun = dvc(root, "repro")
    assert stages_run(rerun.stdout) == {"train", "evaluate"}
    double = json.loads((root / "models/train.json").read_text())
    metrics = json.loads((root / "reports/metrics.json").read_text())

    assert len(double["history"]) == len(single["history"]) == 8
    for key in ("train/loss", "val/loss", "train/acc", "val/acc"):
        a = np.array([row[key] for row in single["history"]])
        b = np.array([row[key] for row in double["history"]])
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=key)  # float summation order only
    assert double["best_epoch"] == single["best_epoch"]
    assert metrics["test"]["accuracy"] == single_metrics["test"]["accuracy"]

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("penguins").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)  # one per repro: rank 1 logged nothing
    run = client.get_run(double["run_id"])
    assert run.data.params["train.processes"] == "2"
    assert run.data.params["train.global_batch"] == "32" and run.data.params["train.per_device_batch"] == "16"
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 8  # no duplicated epochs
    assert not list(root.glob("models/**/*.partial")) and not list(root.glob("reports/**/.*tmp*"))
