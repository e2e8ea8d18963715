"""The pipeline itself (`dvc repro`) against the team server with basic auth on, as a user with an account.

The admin creates the user; the user runs the whole pipeline with ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` in the environment. A wrong password stops train at once with one line; the right
one logs and registers as the user, and the password is written nowhere in what the run recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.asserts import assert_one_error
from tests.project import BIN, call, make_project
from tests.serving.test_server_e2e import mlflow_env, running_server

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice", "alice-password-0123456"


def _recorded(client: MlflowClient, url: str, run_id: str, folder: Path) -> str:
    """Every param, tag and metric name of a run, and the bytes of its artifacts, as one string."""
    import mlflow

    run = client.get_run(run_id)
    parts = [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(sorted(run.data.metrics))]
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(folder), tracking_uri=url))
    files = [path for path in local.rglob("*") if path.is_file()]
    assert any(path.name == "params.yaml" for path in files), files  # the lineage files came down with the rest
    parts += [path.read_bytes().decode(errors="replace") for path in files]
    return "\n".join(parts)


def test_dvc_repro_logs_and_registers_as_the_user_and_a_wrong_password_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import get_app_client

    for key in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with running_server("--auth") as server:
        url = server["url"]
        admin_password = (server["folder"] / "auth" / "admin-password").read_text().strip()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        get_app_client("basic-auth", tracking_uri=url).create_user(USER, PASSWORD)
        admin = MlflowClient(tracking_uri=url, registry_uri=url)

        project = make_project(tmp_path / "p", train__max_epochs=5, train__early_stopping__patience=5,
                               evaluate__baselines=["dummy"])
        wrong = mlflow_env(url, MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD="not-the-password")
        refused = call([BIN / "dvc", "repro"], project, wrong, check=False)
        output = refused.stdout + refused.stderr
        line = assert_one_error(refused, "train")
        assert line.startswith(f"train: error: MLFLOW_TRACKING_URI={url}:") and "401" in line, line
        assert "not-the-password" not in output
        assert admin.search_experiments(filter_string="name = 'penguins'") == []  # nothing reached the server

        done = call([BIN / "dvc", "repro"], project,
                    mlflow_env(url, MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD))
        assert "registered penguins-fnn version 1" in done.stdout, done.stdout
        (experiment,) = admin.search_experiments(filter_string="name = 'penguins'")
        (run,) = admin.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED" and run.info.user_id == USER
        (version,) = admin.search_model_versions("name = 'penguins-fnn'")
        assert version.run_id == run.info.run_id and version.user_id in (USER, None, "")
        assert PASSWORD not in _recorded(admin, url, run.info.run_id, tmp_path / "artifacts")
