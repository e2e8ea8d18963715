"""`python -m pipeline server` failures that need no running server: each is one line, a non-zero exit, and
nothing left running; plus the basic-auth environment and the pipeline's fast failure when no server answers.
The servers themselves run in tests/serving/test_server_e2e.py (slow)."""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline import server, tracking
from pipeline.errors import PipelineError
from pipeline.plumbing import file_lock
from tests.project import ROOT, env, free_port


def here_env() -> dict[str, str]:
    """:func:`env` with this checkout first on ``sys.path``: the commands run in a temporary folder, where
    ``python -m pipeline`` would otherwise import whichever checkout the virtual environment was installed from."""
    return {**env(), "PYTHONPATH": str(ROOT)}


def start(folder: Path, *args: str | int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "server", "start", "--dir", str(folder),
                           *map(str, args)], cwd=folder.parent, env=here_env(), capture_output=True, text=True,
                          check=False, timeout=120)


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("pipeline: error: "), line
    return line


def assert_nothing_started(folder: Path) -> None:
    assert not (folder / "state.json").exists()
    assert not (folder / "postgres").exists()  # not even a cluster
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert str(folder).encode() not in (entry / "cmdline").read_bytes(), entry
            except OSError:
                pass


@pytest.mark.parametrize("which", ["mlflow", "postgres"])
def test_a_port_in_use_is_one_clear_error_and_nothing_starts(tmp_path: Path, which: str) -> None:
    folder = tmp_path / "server"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        port, pg_port = (taken, free_port()) if which == "mlflow" else (free_port(), taken)
        line = one_error(start(folder, "--port", port, "--pg-port", pg_port))
    option = "--port" if which == "mlflow" else "--pg-port"
    assert f"port {taken} on 127.0.0.1 is in use" in line and option in line, line
    assert_nothing_started(folder)


def test_missing_postgresql_binaries_are_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    line = one_error(start(folder, "--port", free_port(), "--pg-port", free_port(), "--pg-bin", empty))
    assert f"initdb and pg_ctl not found in {empty}" in line and "--pg-bin" in line, line
    assert_nothing_started(folder)


def test_the_same_port_for_both_is_refused(tmp_path: Path) -> None:
    port = free_port()
    line = one_error(start(tmp_path / "server", "--port", port, "--pg-port", port))
    assert "--port and --pg-port are both" in line


@pytest.mark.parametrize("command", ["start", "stop"])
def test_a_second_start_or_stop_is_refused_at_once_while_one_runs(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    with file_lock(server.Layout(folder).lock):  # what a running `server start` or `server stop` holds
        done = subprocess.run([sys.executable, "-m", "pipeline", "server", command, "--dir", str(folder)],
                              cwd=tmp_path, env=here_env(), capture_output=True, text=True, check=False, timeout=60)
    line = one_error(done)
    assert line.endswith(f"{folder}: another `server start` or `server stop` is running"), line
    assert_nothing_started(folder)


def test_status_and_stop_without_a_server(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    base = [sys.executable, "-m", "pipeline", "server"]
    status = subprocess.run([*base, "status", "--dir", str(folder)], env=here_env(), capture_output=True, text=True,
                            check=False)
    assert status.returncode == 3 and "not running" in status.stdout
    stop = subprocess.run([*base, "stop", "--dir", str(folder)], env=here_env(), capture_output=True, text=True,
                          check=False)
    assert stop.returncode == 0 and "nothing was running" in stop.stdout


def test_root_never_runs_postgresql_as_root() -> None:
    # as root, root is refused by name; as anyone else, naming another user at all is
    refused = ("PostgreSQL refuses to run as root" if os.geteuid() == 0
               else "only root can run PostgreSQL as another user")
    with pytest.raises(PipelineError, match=f"^--pg-user root: {refused}"):
        server.pg_user("root")


def test_basic_auth_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    layout = server.Layout(tmp_path)
    first = server.auth_environment(layout, 6543, {})
    config = configparser.ConfigParser()
    config.read(first["MLFLOW_AUTH_CONFIG_PATH"])
    assert config["mlflow"]["database_uri"] == "postgresql+psycopg2://mlflow@127.0.0.1:6543/mlflow_auth"
    assert config["mlflow"]["default_permission"] == "READ" and config["mlflow"]["admin_username"] == "admin"
    assert "admin_password" not in config["mlflow"]  # never written to the config, nor a built-in default
    assert len(first["MLFLOW_AUTH_ADMIN_PASSWORD"]) >= 24
    for name in ("admin-password", "secret-key"):
        assert (tmp_path / "auth" / name).stat().st_mode & 0o077 == 0, name
    assert server.auth_environment(layout, 6543, {}) == first  # the same secrets on the next start

    mine = tmp_path / "mine.ini"
    given = server.auth_environment(layout, 6543, {"MLFLOW_AUTH_CONFIG_PATH": str(mine),
                                                   "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"})
    assert given == {}  # the caller's config and key are used as they are


@contextmanager
def hanging_up() -> Iterator[tuple[int, list[int]]]:
    """A port on 127.0.0.1 where every connection is accepted and closed at once, without an answer; yields the
    port and the list of connections counted so far (MLflow's client retries such a server for minutes)."""
    accepted: list[int] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.1)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                accepted.append(1)
                connection.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], accepted
        finally:
            stop.set()
            thread.join(timeout=10)


def test_the_pipeline_fails_at_once_when_no_server_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(PipelineError, match=f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers there"):
        tracking.configure(tmp_path, must_exist=True)
    assert not (tmp_path / "mlflow.db").exists()


def test_the_pipeline_gives_up_after_one_connection_not_mlflows_retries(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """"At once" as an outcome, not a time: one connection to a server that hangs up, then the error (MLflow's
    client, asked first or after, would connect again and again with a growing back-off)."""
    with hanging_up() as (port, accepted):
        uri = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(PipelineError, match=f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers there"):
            tracking.configure(tmp_path, must_exist=True)
    assert len(accepted) == 1, f"{len(accepted)} connections: something retried"
    assert not (tmp_path / "mlflow.db").exists()
