"""Tracking: the workspace store for DVC's temporary copies, lineage tags, and run states after failures.

The failure cases run real child processes and send them real signals (SIGTERM, SIGINT, SIGKILL).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from tests.factories import MakeParams
from tests.project import wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_temporary_copies_log_to_the_workspace_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what DVC sets in a queued or --temp experiment
    assert tracking.tracking_uri(copy) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    assert tracking.tracking_uri(copy) == f"sqlite:///{copy.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(copy) == "http://127.0.0.1:5000"


def test_a_new_store_is_in_wal_mode_and_experiment_artifacts_stay_in_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    client = tracking.configure(copy)
    experiment = tracking.experiment_id(client, "my data/v2", copy)
    assert not (copy / "mlflow.db").exists()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    location = client.get_experiment(experiment).artifact_location
    assert location == (tmp_path.resolve() / "mlruns" / "my-data-v2").as_uri()
    assert tracking.experiment_id(client, "my data/v2", copy) == experiment  # found, not created twice


def test_dvc_tags_name_the_experiment_and_the_hash_of_each_upstream_output_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent("""\
        stages:
          ingest: {cmd: x, outs: [data/raw]}
          unrelated: {cmd: x, outs: [data/other]}
          scale: {cmd: x, deps: [data/raw/schema.json], outs: [data/scaled]}
          train: {cmd: x, deps: [data/scaled, pipeline/x.py], outs: [models/model]}
          evaluate: {cmd: x, deps: [models/model], outs: [reports/plots], metrics: [reports/metrics.json]}
        """))
    (tmp_path / "dvc.lock").write_text(textwrap.dedent("""\
        schema: '2.0'
        stages:
          ingest:
            cmd: python -m pipeline.stages.ingest --out data/raw
            outs:
            - path: data/raw
              hash: md5
              md5: abc.dir
          unrelated:
            outs:
            - {path: data/other, md5: other.dir}
          scale:
            outs:
            - path: data/scaled
              md5: def.dir
          train:
            outs:
            - {path: models/model, md5: previous.dir}
          evaluate:
            outs:
            - {path: reports/plots, md5: previous-plots.dir}
        """))
    monkeypatch.setenv("DVC_EXP_NAME", "sandy-rues")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "853bdad")
    # the lock's train and evaluate entries are the previous run's model: never this run's lineage
    assert tracking.dvc_tags(tmp_path, "train") == {"dvc.experiment": "sandy-rues", "dvc.baseline_rev": "853bdad",
                                                    "dvc.out.data/raw": "abc.dir", "dvc.out.data/scaled": "def.dir"}
    assert tracking.upstream_stages(tmp_path, "evaluate") == {"ingest", "scale", "train"}
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    (tmp_path / "dvc.lock").unlink()
    assert tracking.dvc_tags(tmp_path) == {}


def test_dvc_md5_of_a_folder_is_the_hash_dvc_locks(tmp_path: Path) -> None:
    """The value ``dvc_data`` computes for a folder, written out by hand: md5 of its sorted JSON file list."""
    import json

    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "b.txt").write_bytes(b"bee")
    (tmp_path / "out" / "sub" / "a.txt").write_bytes(b"ay")
    (tmp_path / "file.bin").write_bytes(b"one file")
    md5 = lambda data: hashlib.md5(data).hexdigest()  # noqa: E731
    listing = [{"md5": md5(b"bee"), "relpath": "b.txt"}, {"md5": md5(b"ay"), "relpath": "sub/a.txt"}]
    assert tracking.dvc_md5(tmp_path / "out") == md5(json.dumps(listing, sort_keys=True).encode()) + ".dir"
    assert tracking.dvc_md5(tmp_path / "file.bin") == md5(b"one file")
    assert tracking.output_tags(tmp_path, [Path("out"), tmp_path / "file.bin"]) == {
        "dvc.out.out": tracking.dvc_md5(tmp_path / "out"), "dvc.out.file.bin": md5(b"one file")}


def test_run_name_says_what_changed_from_the_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     make_params: MakeParams) -> None:
    import shutil

    from pipeline.config import flatten

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e"]
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-qm", "base"]):
        subprocess.run([*git, *args], cwd=tmp_path, check=True)
    flat = flatten(make_params(train={"lr": 0.003}, model={"dropout": 0.2}))
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "tonal-gale")
    assert tracking.run_name(tmp_path, flat) == "tonal-gale: model.dropout=0.2 train.lr=0.003"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.run_name(tmp_path, flatten(make_params())) is None


def test_environment_names_the_cpu_and_pip_freeze_lists_the_stack(tmp_path: Path) -> None:
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    tags = tracking.environment_tags(tmp_path)
    if Path("/proc/cpuinfo").exists():  # the model name, not only the architecture platform.processor() gives
        assert tags["env.cpu"] not in ("", "x86_64", "aarch64")
    assert tags["env.requirements_lock_md5"] == hashlib.md5(b"torch==2.13.0\n").hexdigest()
    assert tags["env.gpu_driver"] == "none" or tags["env.gpu"] != "none"
    freeze = tracking.pip_freeze().splitlines()
    names = {line.split("==")[0] for line in freeze}
    assert {"torch", "mlflow", "dvc", "lightning", "pandas", "scikit-learn"} <= names


# A child that opens a run the way the stages do, says it is ready, then waits to be interrupted or killed. The
# run id appears by a rename, whole: once the file exists, the child is inside the run, past its tags.
CHILD = """
import os, sys, time
from pathlib import Path
from pipeline import tracking
from pipeline.errors import run_main

def main():
    client = tracking.configure(Path.cwd())
    with tracking.tracked_run(experiment_id=tracking.experiment_id(client, "faults")) as run:
        Path("run_id.tmp").write_text(run.info.run_id)
        os.replace("run_id.tmp", "run_id")
        if sys.argv[1] == "raise":
            raise RuntimeError("a bug")
        time.sleep(120)

run_main(main, "child")
"""


def _env() -> dict[str, str]:
    """This environment without MLflow or DVC settings: the child uses the store in its working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    return {**env, "PYTHONPATH": str(ROOT)}


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, str]:
    # Ctrl-C as a terminal delivers it: a shell starting a job in the background (`cmd &`, as a CI runner may)
    # sets SIGINT to ignored, which Python then keeps; the child gets the default disposition back
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def ready() -> bool:
        assert child.poll() is None or mode == "raise", child.communicate()
        return (tmp_path / "run_id").exists()

    wait_for(ready, "the child to open its run", timeout=120)
    return child, (tmp_path / "run_id").read_text()


def _status(tmp_path: Path, run_id: str) -> str:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_sigterm_and_ctrl_c_end_the_run_killed(tmp_path: Path, sig: int, code: int, said: str) -> None:
    child, run_id = _start(tmp_path, "wait")
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code and err.strip().endswith(f"child: {said}")
    assert _status(tmp_path, run_id) == "KILLED"


def test_an_exception_ends_the_run_failed(tmp_path: Path) -> None:
    child, run_id = _start(tmp_path, "raise")
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1 and "RuntimeError: a bug" in err
    assert _status(tmp_path, run_id) == "FAILED"


def test_cleanup_marks_a_sigkilled_run_killed_and_leaves_a_live_one(tmp_path: Path) -> None:
    dead, dead_id = _start(tmp_path, "wait")
    dead.kill()  # SIGKILL: no handler runs, the run stays RUNNING
    dead.communicate(timeout=60)
    assert _status(tmp_path, dead_id) == "RUNNING"
    (tmp_path / "run_id").unlink()
    live, live_id = _start(tmp_path, "wait")
    try:
        done = subprocess.run([sys.executable, "-m", "pipeline", "runs", "cleanup"], cwd=tmp_path,
                              capture_output=True, text=True, check=True, env=_env())
        assert f"runs: {dead_id} marked KILLED: process {dead.pid} is gone" in done.stdout
        assert f"runs: {live_id} left RUNNING: process {live.pid} is still running" in done.stdout
        assert _status(tmp_path, dead_id) == "KILLED" and _status(tmp_path, live_id) == "RUNNING"
    finally:
        live.terminate()
        live.communicate(timeout=60)
    assert _status(tmp_path, live_id) == "KILLED"
