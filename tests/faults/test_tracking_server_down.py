"""The MLflow tracking server unreachable when train starts: one line naming the URI, before any training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.helpers import copy_project, error_lines, lock_stages, start_repro
from tests.project import free_port, stages_run

pytestmark = pytest.mark.slow


def test_train_fails_at_once_naming_the_uri_when_no_server_answers(tmp_path: Path, scaled: Path) -> None:
    project = copy_project(scaled, tmp_path / "p")
    uri = f"http://127.0.0.1:{free_port()}"
    repro = start_repro(project, extra_env={"MLFLOW_TRACKING_URI": uri})
    try:
        done = repro.wait()
    finally:
        repro.kill_group()
    took = time.monotonic() - repro.started

    assert done.returncode != 0
    assert stages_run(done.stdout) == {"train"}
    (line,) = error_lines(done.stderr, "train")
    assert line.startswith(f"train: error: MLFLOW_TRACKING_URI={uri}: no MLflow server answers there ("), line
    assert "Traceback" not in done.stderr, done.stderr
    # MLflow's own client retries for minutes; this is the import time of train and one refused connection
    assert took < 60, f"train took {took:.1f} s to give up"
    assert not (project / "models").exists() or not any((project / "models").iterdir())  # no checkpoint, no model
    assert not (project / "mlflow.db").exists()
    assert "train" not in lock_stages(project)
