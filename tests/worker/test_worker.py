"""The workspace worker, through real processes: ``python -m pipeline worker start``, stage commands run by DVC and
by hand, and the results, exit codes, messages and signals a stage gives in a fresh process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.worker.client import private, socket_path
from pipeline.worker.control import ask
from tests.project import dvc, env, make_project, run, wait_for

STAGE_ERROR = ["-m", "pipeline.stages.split", "--raw", "no-such-folder", "--out", "data/nowhere"]


def worker(project: Path, action: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pipeline", "worker", action], project, check=check, timeout=180)


def status(project: Path) -> dict[str, int]:
    """``served`` and ``running`` from ``worker status``."""
    line = worker(project, "status").stdout.splitlines()[1]  # "N stage runs served, M running; ..."
    served, running = line.split(" stage runs served, ")
    return {"served": int(served.split()[-1]), "running": int(running.split()[0])}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default project with a worker serving it (stopped at the end, whatever happened)."""
    root = make_project(tmp_path_factory.mktemp("worker") / "project")
    worker(root, "start")
    try:
        yield root
    finally:
        worker(root, "stop", check=False)


def test_a_private_folder_is_this_users_and_closed_to_others(tmp_path: Path) -> None:
    folder = tmp_path / "sockets"
    folder.mkdir(mode=0o700)
    assert private(folder)
    folder.chmod(0o755)  # others may enter: a socket there could be anyone's
    assert not private(folder)
    assert not private(tmp_path / "missing")


def _metrics(project: Path) -> dict:
    """evaluate's metrics, less the MLflow run id (each run has its own)."""
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics.pop("mlflow_run_id")
    return metrics


@pytest.mark.slow
def test_dvc_repro_through_the_worker_gives_the_weights_and_metrics_of_fresh_processes(project: Path) -> None:
    before = status(project)["served"]
    dvc(project, "repro", timeout=600)
    assert status(project)["served"] == before + 6  # ingest, split, clean, scale, train, evaluate
    served = (project / "models/model/weights.safetensors").read_bytes()
    metrics = _metrics(project)
    fresh = {**env(), "PIPELINE_WORKER": "off"}
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "-f"], cwd=project, env=fresh, check=True,
                   capture_output=True, timeout=600)
    assert status(project)["served"] == before + 6  # none of those went to the worker
    assert (project / "models/model/weights.safetensors").read_bytes() == served
    assert _metrics(project) == metrics


@pytest.mark.slow
def test_a_failing_stage_exits_with_its_own_code_and_message(project: Path) -> None:
    before = status(project)["served"]
    through = run([sys.executable, *STAGE_ERROR], project, check=False, timeout=120)
    alone = subprocess.run([sys.executable, *STAGE_ERROR], cwd=project, env={**env(), "PIPELINE_WORKER": "off"},
                           capture_output=True, text=True, timeout=120)
    assert status(project)["served"] == before + 1
    assert (through.returncode, through.stdout, through.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    assert through.returncode == 1 and through.stderr.startswith("split: error: no-such-folder/schema.json")


@pytest.mark.slow
def test_changed_code_or_environment_runs_the_stage_here_and_says_why(project: Path) -> None:
    before = status(project)["served"]
    served = run([sys.executable, *STAGE_ERROR], project, check=False)  # the worker runs this one
    assert status(project)["served"] == before + 1, served.stderr
    started_with = ask(project, "status")["environment"]  # as `worker status` prints it
    printed = worker(project, "status").stdout.splitlines()[2]
    assert printed.startswith("worker: started with ") and all(f"{k}={v}" in printed for k, v in started_with.items())
    threads = str(int(started_with.get("OMP_NUM_THREADS", "1")) + 1)  # a value the worker was not started with
    other = subprocess.run([sys.executable, *STAGE_ERROR], cwd=project, env={**env(), "OMP_NUM_THREADS": threads},
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 1 and other.stderr.startswith(
        "pipeline worker: not used (the environment differs from the worker's in OMP_NUM_THREADS)"), (
        f"OMP_NUM_THREADS={threads} against the worker's {started_with}: {other.stderr}")
    source = project / "pipeline/stages/split.py"
    original = source.read_text()
    source.write_text(original + "\n# edited after the worker started\n")
    try:
        edited = run([sys.executable, *STAGE_ERROR], project, check=False)
    finally:
        source.write_text(original)
    assert edited.returncode == 1 and edited.stderr.splitlines()[0] == (
        "pipeline worker: not used (pipeline/ changed since the worker started; restart it: "
        "python -m pipeline worker start); running in this process")
    assert edited.stderr.splitlines()[1] == served.stderr.strip()
    assert status(project)["served"] == before + 1  # only the baseline


def _training(project: Path) -> subprocess.Popen[str]:
    """A long training through the worker (the data stages done first), once its first epoch is in MLflow."""
    dvc(project, "repro", "scale", timeout=600)
    command = [sys.executable, "-m", "pipeline.stages.train", "--raw", "data/raw", "--clean", "data/clean",
               "--scaled", "data/scaled", "--out", "models/long", "--restarts", "models/long.safetensors",
               "--info", "models/long.json", "--checkpoints", "models/long-checkpoints"]
    params = project / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("max_epochs: auto", "max_epochs: 100000").replace("patience: auto",
                                                                                      "patience: 100000"))
    try:
        process = subprocess.Popen(command, cwd=project, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        wait_for(lambda: status(project)["running"] == 1, "the training to start in the worker")
        wait_for(lambda: (project / "models/long-checkpoints/last.ckpt").exists(), "a checkpoint", timeout=300)
        return process
    finally:
        params.write_text(text)


@pytest.mark.slow
def test_ctrl_c_reaches_the_stage_in_the_worker(project: Path) -> None:
    process = _training(project)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "train: interrupted (Ctrl-C)"
    assert status(project)["running"] == 0


@pytest.mark.slow
def test_a_killed_stage_process_ends_its_run_in_the_worker(project: Path) -> None:
    process = _training(project)
    os.kill(process.pid, signal.SIGKILL)  # DVC's child gone without a word: its run must not go on alone
    process.wait(timeout=30)
    wait_for(lambda: status(project)["running"] == 0, "the worker to end the orphaned run", timeout=120)


@pytest.mark.slow
def test_start_status_and_stop(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    assert worker(root, "status", check=False).returncode == 3
    started = worker(root, "start").stdout
    assert started.startswith("worker: pid ") and f"serving {root.resolve()}" in started
    assert worker(root, "start").stdout.startswith("worker: already running")
    assert worker(root, "status").returncode == 0
    assert worker(root, "stop").stdout.startswith("worker: stopped pid ")
    assert not socket_path(root).exists()
    assert worker(root, "status", check=False).returncode == 3
    bad = run([sys.executable, "-m", "pipeline", "worker", "start", "--idle-minutes", "0"], root, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "pipeline: error: --idle-minutes = 0.0: expected a number of minutes above 0")
