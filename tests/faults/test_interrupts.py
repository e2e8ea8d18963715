"""Ctrl-C on a real training, and a kill while evaluate logs and registers the model, under a real `dvc repro`.

Ctrl-C is what a terminal sends: SIGINT to the whole foreground process group (dvc, its shell and the stage).
The kill during registration is SIGKILL to evaluate's own process once its MLflow model is being written, the
moment the registry could be left holding a version whose model is incomplete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from pathlib import Path

import mlflow
import pytest

from tests.faults.helpers import (
    EPOCHS, STAGE_OUTS, copy_project, epoch_saved, lock_stages, registered_versions, runs, snapshot, start_repro,
    temp_leftovers, wait_until,
)
from tests.project import dvc, make_project, run, stages_run

pytestmark = pytest.mark.slow


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


def test_ctrl_c_during_train_ends_it_with_one_line_and_the_rerun_resumes(tmp_path: Path, scaled: Path) -> None:
    project = copy_project(scaled, tmp_path / "p")
    lock_before, outs_before = lock_stages(project), snapshot(project, STAGE_OUTS["train"])
    last = project / "models" / "checkpoints" / "last.ckpt"

    repro = start_repro(project)
    try:
        wait_until(repro, "train saved its epoch 2 checkpoint", lambda: epoch_saved(last) >= 2 and repro.stage("train"))
        os.killpg(repro.process.pid, signal.SIGINT)  # the terminal's Ctrl-C: every process in the group
        done = repro.wait()
    finally:
        repro.kill_group()
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    _no_traceback(output)
    assert [line for line in done.stderr.splitlines() if line.startswith("train:")] == ["train: interrupted (Ctrl-C)"]
    assert lock_stages(project) == lock_before, "dvc.lock changed"
    for rel, files in snapshot(project, STAGE_OUTS["train"]).items():
        assert files is None or files == outs_before[rel], f"{rel} was left changed by the interrupted train"
    assert temp_leftovers(project) == []
    (tracked,) = runs(project)
    assert tracked.info.status == "KILLED"  # closed by the stage itself, not left RUNNING
    saved = epoch_saved(last)
    assert 2 <= saved < EPOCHS - 1, saved

    done = dvc(project, "repro")
    assert f"train: resuming from models/checkpoints/last.ckpt: {saved + 1} of {EPOCHS} epochs done" in done.stdout
    assert "Data and pipelines are up to date." in dvc(project, "status").stdout
    assert sorted(r.info.status for r in runs(project)) == ["FINISHED", "KILLED"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Penguins trained briefly (every stage but evaluate locked)."""
    project = make_project(tmp_path_factory.mktemp("trained"), train__max_epochs=5,
                           train__early_stopping__patience=5, evaluate__baselines=["dummy"])
    dvc(project, "repro", "train")
    return project


def _artifacts(project: Path) -> Path:
    """Where the project's experiment keeps its artifacts (a copied project's still point into the original)."""
    from mlflow.tracking import MlflowClient

    (experiment,) = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").search_experiments(filter_string="name != 'Default'")
    return Path(experiment.artifact_location.removeprefix("file://"))


def _writing_model(repro, artifacts: Path, before: set[Path]) -> object:
    """Evaluate's process once it has started writing its MLflow model (a new logged model's folder exists)."""
    process = repro.stage("evaluate")
    if process is None or not set(artifacts.glob("models/m-*")) - before:
        return None
    return process


def _registered(repro, project: Path) -> object:
    """Evaluate's process once a version is in the registry (read straight from the store's table)."""
    process = repro.stage("evaluate")
    with contextlib.closing(sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True, timeout=5)) as db:
        count = db.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    return process if process is not None and count else None


@pytest.mark.parametrize("moment", ["logging the model", "just registered"])
def test_a_kill_while_evaluate_registers_leaves_no_broken_version_and_the_rerun_registers(tmp_path: Path,
                                                                                          trained: Path,
                                                                                          moment: str) -> None:
    project = copy_project(trained, tmp_path / "p")
    lock_before = lock_stages(project)
    artifacts = _artifacts(project)
    before = set(artifacts.glob("models/m-*"))
    ready = {"logging the model": lambda: _writing_model(repro, artifacts, before),
             "just registered": lambda: _registered(repro, project)}[moment]
    repro = start_repro(project)
    try:
        process = wait_until(repro, f"evaluate was {moment}", ready, poll=0.005)
        process.send_signal(signal.SIGKILL)
        done = repro.wait()
    finally:
        repro.kill_group()
    assert done.returncode != 0 and "failed to reproduce 'evaluate'" in done.stdout + done.stderr
    assert lock_stages(project) == lock_before, "dvc.lock changed"
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    left = registered_versions(project)
    assert len(left) == (moment == "just registered"), left
    for version in left:  # what the kill left registered is whole: it loads
        mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")

    cleaned = run(["python", "-m", "pipeline", "runs", "cleanup"], project)
    assert f"marked KILLED: process {process.pid} is gone" in cleaned.stdout
    done = dvc(project, "repro")
    assert stages_run(done.stdout) == {"evaluate"}, done.stdout
    assert "Data and pipelines are up to date." in dvc(project, "status").stdout
    assert all(r.info.status != "RUNNING" for r in runs(project))
    model = (project / "reports" / "model.json").read_text()
    versions = registered_versions(project)
    assert versions, "the rerun registered nothing"
    latest = max(versions, key=lambda v: int(v.version))
    assert f'"version": {latest.version}' in model, model
    predicted = run(["python", "-m", "pipeline", "predict", "--model", str(latest.version), "--input",
                     "data/split/test.parquet", "--output", "p.csv"], project)
    _no_traceback(predicted.stdout + predicted.stderr)
    assert temp_leftovers(project) == []
