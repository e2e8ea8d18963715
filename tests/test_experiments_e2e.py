"""Experiments through DVC's own queue: parallel workers in temporary copies all land in the workspace store.

Real `dvc exp run --queue` and `dvc queue start -j 2`: each experiment runs the whole pipeline in a copy under
.dvc/tmp/exps, two at a time, writing to one SQLite store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.project import dvc, make_project

pytestmark = pytest.mark.slow

RATES = {"lr-002": 0.002, "lr-005": 0.005, "lr-02": 0.02}
TEMP = ("temp-lr-03", 0.03)  # one more through `dvc exp run --temp`, which also runs in a temporary copy


def _wait_for_queue(project: Path, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc(project, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(2)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def test_queued_experiments_with_two_workers_all_log_to_the_workspace_store(tmp_path: Path) -> None:
    project = make_project(tmp_path, train__max_epochs=15, train__early_stopping__patience=5)
    for name, lr in RATES.items():
        dvc(project, "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}")
    dvc(project, "queue", "start", "-j", "2")
    status = _wait_for_queue(project)
    assert status.count("Success") == 3, status
    dvc(project, "exp", "run", "--temp", "-n", TEMP[0], "-S", f"train.lr={TEMP[1]}")

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("penguins")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.data.tags.get("dvc.experiment"): run for run in runs}
    rates = {**RATES, TEMP[0]: TEMP[1]}
    assert set(by_name) == set(rates), [r.data.tags for r in runs]
    # two workers: some two queued experiments' runs (train's start to evaluate's end) were open at once
    spans = sorted((by_name[name].info.start_time, by_name[name].info.end_time) for name in RATES)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    for name, run in by_name.items():
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"{name}: train.lr={rates[name]}"  # named after what changed
        assert float(run.data.params["train.lr"]) == rates[name]
        assert 0.0 <= run.data.metrics["test/accuracy"] <= 1.0
        assert run.data.tags["registered_model"] == "penguins-fnn"
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        assert artifacts.is_relative_to(project / "mlruns") and (artifacts / "config" / "params.yaml").is_file()
    assert len(client.search_model_versions("name = 'penguins-fnn'")) == 4
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))  # no store was left in a temporary copy

    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    experiments = {exp["name"]: exp for rev in shown for exp in (rev.get("experiments") or [])}
    for name in RATES:
        data = experiments[name]["revs"][0]["data"]
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert metrics["mlflow_run_id"] == by_name[name].info.run_id  # DVC's record points at MLflow's
        assert metrics["test"]["accuracy"] == by_name[name].data.metrics["test/accuracy"]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == RATES[name]

    # comparing two experiments: metrics side by side, and every plot drawn for both, none failing to load
    # --all: both may score the same (penguins is easy), and an unchanged metric is otherwise left out
    diff = json.loads(dvc(project, "metrics", "diff", "lr-002", "lr-02", "--all", "--json").stdout)
    accuracy = diff["reports/metrics.json"]["test.accuracy"]
    assert accuracy["old"] == by_name["lr-002"].data.metrics["test/accuracy"]
    assert accuracy["new"] == by_name["lr-02"].data.metrics["test/accuracy"]
    drawn = dvc(project, "plots", "diff", "lr-002", "lr-02", "--json")
    assert "failed to load" not in drawn.stdout + drawn.stderr
    plots = json.loads(drawn.stdout)
    assert not plots.get("errors"), plots.get("errors")
    images = {name for name in plots["data"] if name.startswith("reports/plots/images/")}
    assert {Path(name).name for name in images} >= {"confusion.png", "roc_pr.png", "calibration.png",
                                                    "learning_curves.png", "gradient_norms.png"}
    for name in images | {"reports/plots/history.csv", "learning rate"}:
        assert {rev for entry in plots["data"][name] for rev in entry["revisions"]} == {"lr-002", "lr-02"}, name
