"""End to end: `python -m pipeline server` starts PostgreSQL and an `mlflow server` on free ports, the real
`dvc repro` logs to it over HTTP, the registered model comes back over HTTP with the recorded predictions, and
`stop` leaves no process and no port behind. Then the same with MLflow's basic auth and a read-only user.

Each server lives in its own folder under the system temp dir (PostgreSQL's user must reach it, which pytest's
0700 temp root forbids when the tests run as root). Fixtures stop every server they start, whatever happens,
and then kill anything still naming the server's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.asserts import assert_one_error
from tests.project import BIN, ROOT, call, env, free_port, listening, make_project

pytestmark = pytest.mark.slow


# --- helpers -----------------------------------------------------------------------------------------------




def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` (SO_REUSEADDR, as the servers bind)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True




def server_cli(action: str, folder: Path, *args: str | int, environ: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline server ACTION --dir FOLDER ...``, this checkout's (the folder is outside it, where
    ``python -m pipeline`` would import whichever checkout the virtual environment was installed from)."""
    return call([sys.executable, "-m", "pipeline", "server", action, "--dir", folder, *map(str, args)],
                folder.parent, {**(environ or env()), "PYTHONPATH": str(ROOT)}, check=check)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def group_alive(pgid: int) -> list[int]:
    """The live members of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def processes_naming(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder`` (the postmaster's -D, mlflow's artifacts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(folder).encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_leftovers(folder: Path, groups: set[int]) -> None:
    """Last resort after `server stop`: SIGKILL the MLflow process groups seen (``groups`` and the state
    file's), and anything naming ``folder`` with its group."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        groups.add(int(json.loads((folder / "state.json").read_text())["mlflow_pgid"]))
    for pgid in groups:
        if group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    for pid in processes_naming(folder):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(processes_naming(folder) + [p for g in groups for p in group_alive(g)])


@contextlib.contextmanager
def server_folder() -> Iterator[Path]:
    """An empty folder for one server that PostgreSQL's user can reach; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pipeline-server-"))
    os.chmod(base, 0o755)
    try:
        yield base / "server"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def running_server(*args: str, environ: dict[str, str] | None = None) -> Iterator[dict]:
    """Start a server on two free ports; always stop it (and kill what survives) afterwards."""
    with server_folder() as folder:
        port, pg_port = free_port(), free_port()
        groups: set[int] = set()
        try:
            started = server_cli("start", folder, "--port", port, "--pg-port", pg_port, *args, environ=environ)
            state = json.loads((folder / "state.json").read_text())
            groups.add(state["mlflow_pgid"])  # killed at the end even if `stop` forgets it
            yield {"folder": folder, "port": port, "pg_port": pg_port, "url": f"http://127.0.0.1:{port}",
                   "state": state, "started": started}
        finally:
            try:
                server_cli("stop", folder, check=False)
            finally:
                kill_leftovers(folder, groups)


def mlflow_env(url: str, **extra: str) -> dict[str, str]:
    """The child environment of :func:`tests.project.env` with MLflow pointed at the server ``url``."""
    return {**env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **extra}


def database_rows(server: dict, query: str, *params: str) -> list[tuple]:
    """Rows of ``query`` against the server's PostgreSQL tracking database (password from its pgpass)."""
    import psycopg2

    password = (server["folder"] / "pgpass").read_text().strip().rsplit(":", 1)[1]
    with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=server["pg_port"], user="mlflow",
                                             password=password, dbname="mlflow")) as connection:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall()


# --- the pipeline against a server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[dict]:
    with running_server() as found:
        yield found


@pytest.fixture(scope="module")
def project(server: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default penguins project after one `dvc repro` that logged to the server."""
    root = make_project(tmp_path_factory.mktemp("against-server"), train__max_epochs=15,
                        train__early_stopping__patience=5)
    call([BIN / "dvc", "repro"], root, mlflow_env(server["url"]))
    return root


def test_start_reports_both_parts_and_records_them(server: dict) -> None:
    state, folder = server["state"], server["folder"]
    assert f"mlflow server: running, pid {state['mlflow_pid']} at {server['url']}" in server["started"].stdout
    postgres = f"postgresql:    running, pid {state['postgres_pid']} on 127.0.0.1:{server['pg_port']}"
    assert postgres in server["started"].stdout
    assert state["port"] == server["port"] and state["pg_port"] == server["pg_port"]
    assert alive(state["mlflow_pid"]) and alive(state["postgres_pid"])
    assert not port_free(server["port"]) and not port_free(server["pg_port"])
    assert state["backend_store"].startswith("postgresql+psycopg2://mlflow@127.0.0.1:")
    assert (folder / "pgpass").stat().st_mode & 0o077 == 0  # the database password: the owner's alone
    data = folder / "postgres" / "data"
    if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster is another user's, and runs as that user
        owner = data.stat().st_uid
        assert owner != 0 and state["pg_user"] and Path(f"/proc/{state['postgres_pid']}").stat().st_uid == owner
    with urllib.request.urlopen(f"{server['url']}/health", timeout=10) as response:
        assert response.status == 200
    # a second start finds it running and changes nothing
    again = server_cli("start", folder, "--port", server["port"], "--pg-port", server["pg_port"])
    assert "already running" in again.stdout
    assert json.loads((folder / "state.json").read_text())["mlflow_pid"] == state["mlflow_pid"]
    status = server_cli("status", folder)
    assert f"running, pid {state['mlflow_pid']}" in status.stdout
    assert f"MLFLOW_TRACKING_URI={server['url']}" in status.stdout


def test_the_run_and_the_registered_version_live_in_the_server(server: dict, project: Path) -> None:
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()  # nothing local
    client = MlflowClient(tracking_uri=server["url"], registry_uri=server["url"])
    experiment = client.get_experiment_by_name("penguins")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id == json.loads((project / "models/train.json").read_text())["run_id"]
    assert run.data.params["train.max_epochs"] == "15" and run.data.params["seed"] == "42"
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert run.data.metrics["test/accuracy"] == metrics["test"]["accuracy"] >= 0.9
    assert metrics["mlflow_run_id"] == run.info.run_id

    model = json.loads((project / "reports/model.json").read_text())
    version = client.get_model_version(model["name"], "1")
    assert str(model["version"]) == "1" and version.run_id == run.info.run_id and version.status == "READY"

    # PostgreSQL is the backend store: the run and the version are rows there
    assert database_rows(server, "SELECT status FROM runs WHERE run_uuid = %s", run.info.run_id) == [("FINISHED",)]
    assert database_rows(server, "SELECT version FROM model_versions WHERE name = %s", model["name"]) == [(1,)]

    # the artifacts landed in the server's artifact folder, byte for byte
    artifacts = server["folder"] / "artifacts"
    run_folder = artifacts / run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    assert (run_folder / "config" / "params.yaml").read_bytes() == (project / "params.yaml").read_bytes()
    weights = list(artifacts.rglob("weights.safetensors"))
    assert weights, f"no model weights under {artifacts}"
    assert all(w.read_bytes() == (project / "models/model/weights.safetensors").read_bytes() for w in weights)


def test_a_pinned_alias_reloads_over_http_with_the_recorded_predictions(server: dict, project: Path,
                                                                       tmp_path: Path) -> None:
    environ = mlflow_env(server["url"])
    name = json.loads((project / "reports/model.json").read_text())["name"]
    pinned = call([sys.executable, "-m", "pipeline", "models", "pin", "1", "--alias", "champion"], project, environ)
    assert f"{name}@champion -> version 1" in pinned.stdout
    client = MlflowClient(tracking_uri=server["url"], registry_uri=server["url"])
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    rows = tmp_path / "rows.csv"
    pd.read_parquet(project / "data/split/test.parquet").drop(columns=["species"]).to_csv(rows, index=False)
    recorded = pd.read_csv(project / "reports/predictions.csv").drop(columns=["actual"])

    ours = tmp_path / "ours.csv"
    call([sys.executable, "-m", "pipeline", "predict", "--model", "champion", "--input", rows, "--output", ours],
         project, environ)
    pd.testing.assert_frame_equal(pd.read_csv(ours), recorded, check_exact=True)

    theirs = tmp_path / "pyfunc.csv"
    code = ("import sys, mlflow, pandas as pd; "
            "mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.read_csv(sys.argv[2])).to_csv(sys.argv[3], index=False)")
    call([sys.executable, "-c", code, f"models:/{name}@champion", rows, theirs], tmp_path,
         mlflow_env(server["url"], MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false"))
    pd.testing.assert_frame_equal(pd.read_csv(theirs), recorded, check_exact=True)
    assert not (project / "mlflow.db").exists()


def test_both_parts_listen_on_loopback_only(server: dict) -> None:
    """Where the sockets really are, as the kernel lists them: a bind to every interface shows as 0.0.0.0 (or ::),
    which the machine's other addresses would reach."""
    assert listening(server["port"]) == {"127.0.0.1"}, "mlflow server"
    assert listening(server["pg_port"]) == {"127.0.0.1"}, "PostgreSQL"


def test_stop_ends_both_processes_and_frees_both_ports(project: Path) -> None:
    with running_server() as server:  # its own: the module's server stays up for the tests that use it
        state, folder = server["state"], server["folder"]
        workers = group_alive(state["mlflow_pgid"])
        assert len(workers) >= 3, workers  # mlflow, uvicorn, its workers: all of them must go
        done = server_cli("stop", folder)
        said = (f"stopped mlflow server (process group {state['mlflow_pgid']}) and PostgreSQL "
                f"(pid {state['postgres_pid']})")
        assert said in done.stdout, done.stdout
        assert wait_gone(workers + [state["postgres_pid"]]) == []
        assert group_alive(state["mlflow_pgid"]) == [] and processes_naming(folder) == []
        assert port_free(server["port"]) and port_free(server["pg_port"])
        assert not (folder / "state.json").exists()
        status = server_cli("status", folder, check=False)
        assert status.returncode == 3 and "not running" in status.stdout
        # the pipeline now says that nobody answers, one line, instead of retrying for minutes into a traceback;
        # the timeout is a hang guard
        listing = call([sys.executable, "-m", "pipeline", "models", "list"], project, mlflow_env(server["url"]),
                       check=False, timeout=180)
        line = assert_one_error(listing, "pipeline")
        assert f"MLFLOW_TRACKING_URI={server['url']}: no MLflow server answers there" in line, line


def test_postgres_failing_to_start_is_one_clear_error_and_leaves_nothing_running() -> None:
    with running_server() as server:  # its own, stopped here: a start over a running one changes nothing
        folder = server["folder"]
        server_cli("stop", folder)
        conf = folder / "postgres" / "data" / "postgresql.conf"
        original = conf.read_text()
        conf.write_text(original + "no_such_setting = 1\n")
        try:
            done = server_cli("start", folder, "--port", server["port"], "--pg-port", server["pg_port"],
                              check=False)
        finally:
            conf.write_text(original)
        line = assert_one_error(done, "pipeline", alone=True)
        assert line.startswith("pipeline: error: PostgreSQL failed to start") and "no_such_setting" in line, line
        assert processes_naming(folder) == [] and not (folder / "state.json").exists()
        assert port_free(server["port"]) and port_free(server["pg_port"])


# --- basic auth ----------------------------------------------------------------------------------------------


def test_basic_auth_lets_a_reader_read_but_not_write(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import get_app_client  # MLflow's client for its auth app's REST API

    for key in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with running_server("--auth") as server:
        url, folder = server["url"], server["folder"]
        assert "(basic auth)" in server["started"].stdout
        secret = folder / "auth" / "admin-password"
        assert secret.stat().st_mode & 0o077 == 0
        admin_password = secret.read_text().strip()
        assert len(admin_password) >= 24 and "admin_password" not in (folder / "auth/basic_auth.ini").read_text()

        def get(path: str, user: str | None = None, password: str | None = None) -> int:
            request = urllib.request.Request(f"{url}{path}")
            if user is not None:
                import base64

                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        search = "/api/2.0/mlflow/experiments/search?max_results=10"
        assert get(search) == 401  # no credentials
        assert get(search, "admin", "wrong-password") == 401
        assert get(search, "admin", admin_password) == 200
        assert get("/health") == 200

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        admin = MlflowClient(tracking_uri=url, registry_uri=url)
        experiment = admin.create_experiment("shared")
        run = admin.create_run(experiment)
        admin.log_param(run.info.run_id, "lr", "0.01")
        admin.log_metric(run.info.run_id, "acc", 0.9)
        admin.set_terminated(run.info.run_id)
        auth = get_app_client("basic-auth", tracking_uri=url)
        auth.create_user("reader", "reader-password-0123")
        auth.grant_user_permission("reader", "experiment", experiment, "READ")

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "reader-password-0123")
        reader = MlflowClient(tracking_uri=url, registry_uri=url)
        got = reader.get_run(run.info.run_id)
        assert got.data.params == {"lr": "0.01"} and got.data.metrics == {"acc": 0.9}
        assert [r.info.run_id for r in reader.search_runs([experiment])] == [run.info.run_id]
        writes = {
            "create a run": lambda: reader.create_run(experiment),
            "log a param": lambda: reader.log_param(run.info.run_id, "lr", "0.1"),
            "log a metric": lambda: reader.log_metric(run.info.run_id, "acc", 1.0),
            "rename the experiment": lambda: reader.rename_experiment(experiment, "mine"),
            "create a user": lambda: get_app_client("basic-auth", tracking_uri=url).create_user(
                "intruder", "intruder-password-0123"),
        }
        for what, write in writes.items():
            with pytest.raises(mlflow.exceptions.MlflowException) as refused:
                write()
            assert refused.value.error_code == "PERMISSION_DENIED", (what, refused.value)
            assert refused.value.get_http_status_code() == 403, what
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        assert admin.get_run(run.info.run_id).data.params == {"lr": "0.01"}  # nothing the reader tried landed
        assert len(admin.search_runs([experiment])) == 1

        state = server["state"]
        server_cli("stop", folder)
        assert wait_gone([state["mlflow_pid"], state["postgres_pid"]]) == []
        assert group_alive(state["mlflow_pgid"]) == [] and processes_naming(folder) == []
        assert port_free(server["port"]) and port_free(server["pg_port"])
