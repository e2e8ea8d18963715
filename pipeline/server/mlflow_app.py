"""``mlflow server`` on the PostgreSQL cluster: its basic-auth environment, its start and health checks."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress

from pipeline.errors import PipelineError
from pipeline.server.files import _log_size, _secret, _tail
from pipeline.server.layout import AUTH_DB, Layout
from pipeline.server.postgres import backend_uri
from pipeline.server.statefile import _record


def auth_environment(layout: Layout, pg_port: int, environ: dict[str, str]) -> dict[str, str]:
    """The environment ``mlflow server --app-name basic-auth`` needs.

    ``MLFLOW_AUTH_CONFIG_PATH`` set by the caller is used as it is. Otherwise ``auth/basic_auth.ini`` is
    written: users and permissions in the cluster's ``mlflow_auth`` database, ``default_permission = READ``
    (MLflow's default), admin ``MLFLOW_AUTH_ADMIN_USERNAME`` or ``admin``. The admin's first password is
    ``MLFLOW_AUTH_ADMIN_PASSWORD`` if set, else generated into ``auth/admin-password`` (mode 0600); MLflow
    uses it only when it creates the admin, so change it later through MLflow's API. The CSRF secret
    is ``MLFLOW_FLASK_SERVER_SECRET_KEY`` if set, else generated into ``auth/secret-key``.
    """
    layout.auth.mkdir(mode=0o700, exist_ok=True)
    extra: dict[str, str] = {}
    if not environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        config = configparser.ConfigParser()
        config["mlflow"] = {
            "default_permission": "READ",
            "database_uri": backend_uri(pg_port, AUTH_DB),
            "admin_username": environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        }
        path = layout.auth / "basic_auth.ini"
        with open(path, "w") as handle:
            config.write(handle)
        extra["MLFLOW_AUTH_CONFIG_PATH"] = str(path.resolve())
        if not environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
            extra["MLFLOW_AUTH_ADMIN_PASSWORD"] = _secret(layout.auth / "admin-password")
    if not environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        extra["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret(layout.auth / "secret-key")
    return extra


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard means any address: use loopback)."""
    near = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{near}]:{port}" if ":" in near else f"http://{near}:{port}"


def _healthy(url: str) -> bool:
    with suppress(OSError, ValueError):
        with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
            return response.status == 200
    return False


def start_mlflow(layout: Layout, host: str, port: int, pg_port: int, workers: int, auth: bool,
                 timeout: float) -> int:
    """Start ``mlflow server`` in its own session (process group) and wait for ``/health``; return its pid."""
    layout.artifacts.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ)
    environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI jobs: extra processes, unused here
    environ["PGPASSFILE"] = str(layout.pgpass.resolve())
    environ.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri(pg_port),
            "--serve-artifacts", "--artifacts-destination", str(layout.artifacts.resolve()),
            "--host", host, "--port", str(port), "--workers", str(workers)]
    if auth:
        environ.update(auth_environment(layout, pg_port, environ))
        args += ["--app-name", "basic-auth"]
    since = _log_size(layout.mlflow_log)
    with open(layout.mlflow_log, "ab") as log:
        process = subprocess.Popen(args, cwd=layout.root, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    _record(layout, mlflow_pid=process.pid, mlflow_pgid=process.pid)
    url = _local_url(host, port)
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if process.poll() is not None:
            raise PipelineError(f"mlflow server exited {process.returncode} before answering: "
                                f"{_tail(layout.mlflow_log, since, ('Error', 'Exception'), last=True)} "
                                f"(log: {layout.mlflow_log})")
        if time.monotonic() > deadline:
            raise PipelineError(f"mlflow server did not answer {url}/health in {timeout:.0f} s "
                                f"(log: {layout.mlflow_log})")
        time.sleep(0.5)
    if process.poll() is not None:  # something else answered on that port
        raise PipelineError(f"mlflow server exited {process.returncode}: {_tail(layout.mlflow_log, since)} "
                            f"(log: {layout.mlflow_log})")
    return process.pid
