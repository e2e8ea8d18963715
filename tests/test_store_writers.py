"""Several processes writing one local SQLite store at once, as parallel `dvc exp run` workers and restarts do.

Each writer opens the store the way the stages do (:func:`pipeline.tracking.configure`), then logs its epochs in
many small batches as fast as it can, so their transactions collide and each waits on SQLite's busy timeout
instead of failing with "database is locked". What waits is SQLite's busy timeout: the one the pipeline puts in
the store's URI and the 20 s that MLflow's sessions set per statement (with both at 0, both tests fail).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.project import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WRITERS, BATCHES, PER_BATCH = 4, 300, 12

WRITER = f"""
import sys, time
from pathlib import Path
from pipeline import tracking
from pipeline.errors import run_main

def main():
    client = tracking.configure(Path.cwd())
    with tracking.tracked_run(experiment_id=tracking.experiment_id(client, "writers")) as run:
        Path(sys.argv[1]).write_text(run.info.run_id)
        while not Path("go").exists():  # every writer starts writing at once
            time.sleep(0.001)
        for step in range({BATCHES}):
            buffer = tracking.MetricsBuffer(run.info.run_id)
            buffer({{f"m{{i}}": step + i / 100 for i in range({PER_BATCH})}}, step)
            buffer.flush()  # one transaction per step: the most collisions a training could cause
            client.set_tag(run.info.run_id, "step", str(step))

run_main(main, "writer")
"""


def test_parallel_writers_all_finish_with_every_point_recorded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(ROOT)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"run-{i}"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(WRITERS)]
    wait_for(lambda: all((tmp_path / f"run-{i}").exists() or writers[i].poll() is not None for i in range(WRITERS)),
             "every writer to open its run", timeout=300)
    (tmp_path / "go").touch()
    outputs = [writer.communicate(timeout=600) for writer in writers]  # a hang guard, not a speed target
    for writer, (out, err) in zip(writers, outputs):
        assert writer.returncode == 0, out + err
        assert "locked" not in err and "Traceback" not in err, err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for i in range(WRITERS):
        run = client.get_run((tmp_path / f"run-{i}").read_text())
        assert run.info.status == "FINISHED" and run.data.tags["step"] == str(BATCHES - 1)
        for name in ("m0", f"m{PER_BATCH - 1}"):
            history = client.get_metric_history(run.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(BATCHES)), name


BLOCKED = """
import sys, time
from pathlib import Path
from pipeline import tracking
from pipeline.errors import run_main

def main():
    client = tracking.configure(Path.cwd())
    with tracking.tracked_run(experiment_id=tracking.experiment_id(client, "writers")) as run:
        client.log_metric(run.info.run_id, "before", 1.0)  # every code path of a write taken once, unlocked
        Path("run-id").write_text(run.info.run_id)
        while not Path("locked").exists():  # the test now holds a write transaction open
            time.sleep(0.001)
        Path("writing").touch()
        client.log_metric(run.info.run_id, "waited", 1.0)  # finds the store locked

run_main(main, "writer")
"""


def test_a_writer_that_finds_the_store_locked_waits_for_the_transaction_instead_of_failing(tmp_path: Path) -> None:
    import sqlite3
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(ROOT)
    writer = subprocess.Popen([sys.executable, "-c", BLOCKED], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (tmp_path / "run-id").exists() or writer.poll() is not None, "the writer's first write",
             timeout=300)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer's transaction, held open
    try:
        (tmp_path / "locked").touch()
        wait_for(lambda: (tmp_path / "writing").exists() or writer.poll() is not None, "the writer's second write",
                 timeout=300)
        time.sleep(1.0)  # holding the lock (not waiting for a process): without a busy timeout the write fails now
        assert writer.poll() is None, writer.communicate()  # still waiting for the lock, not failed
    finally:
        holder.execute("COMMIT")
        holder.close()
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0 and "locked" not in err, out + err
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run((tmp_path / "run-id").read_text())
    assert run.info.status == "FINISHED" and run.data.metrics == {"before": 1.0, "waited": 1.0}
