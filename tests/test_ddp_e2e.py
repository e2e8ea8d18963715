"""Data-parallel training for real: `dvc repro` with `train.devices: 2` on CPU starts two processes (gloo), and
their training matches one process on the same global batch, with one MLflow run and one set of outputs.

Dropout is off because each process draws dropout masks for its own rows only; class weights are on, so the
shares of a weighted loss are checked to add up to the whole batch's.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.project import BIN, dvc, env, free_port, make_project, set_params, stages_run

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


def test_two_nodes_under_torchrun_train_as_one_process_does(tmp_path: Path) -> None:
    """The README's multi-node recipe, with two "nodes" on this host: the data stages once, the train command from
    dvc.yaml under torchrun on each node, then `dvc commit -f train` and `dvc repro evaluate` on node 0."""
    root = make_project(tmp_path, train__max_epochs=8, train__accelerator="cpu", model__dropout=0.0,
                        clean__imbalance="class_weight", train__batch_size=32)
    dvc(root, "repro")
    single = json.loads((root / "models/train.json").read_text())

    set_params(root, train__num_nodes=2)
    command = shlex.split(yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]["cmd"])
    assert command[:3] == ["python", "-m", "pipeline.stages.train"]
    port = free_port()
    nodes = [subprocess.Popen([str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(n),
                               "--master-addr", "127.0.0.1", "--master-port", str(port), *command[1:]],
                              cwd=root, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)
    assert "train: fnn (classification)" in outputs[0] and "train: fnn" not in outputs[1]  # node 1 only trained

    dvc(root, "commit", "-f", "train")
    assert stages_run(dvc(root, "repro", "evaluate").stdout) == {"evaluate"}
    assert "Data and pipelines are up to date." in dvc(root, "status").stdout
    double = json.loads((root / "models/train.json").read_text())
    for key in ("train/loss", "val/loss", "train/acc", "val/acc"):
        a = np.array([row[key] for row in single["history"]])
        b = np.array([row[key] for row in double["history"]])
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=key)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(double["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.processes"] == "2"
    assert len(client.search_runs([run.info.experiment_id])) == 2  # the single run and this one: node 1 logged nothing
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 8


def test_a_fine_tuning_with_its_encoder_frozen_then_released_trains_in_two_processes_as_in_one(tmp_path: Path) -> None:
    """DDP wraps the net with every parameter registered; frozen ones get no gradient, which plain DDP waits for
    (the second step failed with Lightning's "parameters that were not used in producing the loss"). Two epochs
    frozen, two released: both phases must match one process on the same global batch."""
    root = make_project(tmp_path, train__max_epochs=4, train__accelerator="cpu", model__dropout=0.0,
                        train__batch_size=32)
    dvc(root, "repro")  # registers penguins-fnn version 1: the source
    set_params(root, train__init_from=1, train__freeze="encoder", train__unfreeze_epoch=2)
    dvc(root, "repro")
    single = json.loads((root / "models/train.json").read_text())

    set_params(root, train__devices=2)
    rerun = dvc(root, "repro")
    assert stages_run(rerun.stdout) == {"train", "evaluate"}
    double = json.loads((root / "models/train.json").read_text())
    assert len(double["history"]) == len(single["history"]) == 4
    for key in ("train/loss", "val/loss"):
        a = np.array([row[key] for row in single["history"]])
        b = np.array([row[key] for row in double["history"]])
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=key)  # float summation order only
    run = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(double["run_id"])
    assert run.data.params["train.processes"] == "2" and run.data.params["parent.version"] == "1"
