"""The MLflow tracking server unreachable when train starts: one line naming the URI, before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.asserts import assert_one_error
from tests.faults.helpers import copy_project, lock_stages, start_repro
from tests.project import free_port, stages_run

pytestmark = pytest.mark.slow


def test_train_fails_at_once_naming_the_uri_when_no_server_answers(tmp_path: Path, scaled: Path) -> None:
    project = copy_project(scaled, tmp_path / "p")
    uri = f"http://127.0.0.1:{free_port()}"
    repro = start_repro(project, extra_env={"MLFLOW_TRACKING_URI": uri})
    try:
        done = repro.wait()  # a hang guard, not a measure: MLflow's own client would retry for minutes
    finally:
        repro.kill_group()

    assert stages_run(done.stdout) == {"train"}
    line = assert_one_error(done, "train")
    assert line.startswith(f"train: error: MLFLOW_TRACKING_URI={uri}: no MLflow server answers there ("), line
    # stopped before training: no checkpoint of even one epoch, no model, no local store instead
    assert not (project / "models").exists() or not any((project / "models").iterdir())
    assert not (project / "mlflow.db").exists()
    assert "train" not in lock_stages(project)
