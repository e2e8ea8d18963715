"""The MLflow store: where it is, the file lock that serialises creating it, and experiments.

The store is the SQLite database ``mlflow.db`` at the workspace root unless ``MLFLOW_TRACKING_URI`` points
elsewhere (a server, say). Artifacts of local runs go to ``mlruns/`` beside it. The workspace is where
``dvc.yaml`` lives; ``dvc exp run --temp`` and queued experiments run in a copy under ``.dvc/tmp/exps``, and
DVC tells them the workspace in ``DVC_ROOT``, so every experiment lands in the one store the user looks at.
Several experiments may write at once: the store runs in SQLite's WAL mode with a busy timeout, and creating
the store or an experiment happens under a file lock. None of that applies to a tracking server
(``python -m pipeline server start``): it serialises writers itself and chooses where artifacts go.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.plumbing import file_lock

# How long a connection waits for another writer's SQLite transaction before failing: this module's own
# connections and each new MLflow connection (the URI's ``timeout``). MLflow's sessions then set their own
# ``PRAGMA busy_timeout`` of 20 s per statement (mlflow/store/db/utils.py), which is what a logging call waits;
# tests/test_store_writers.py fails when both are 0.
BUSY_TIMEOUT_S = 60


def workspace(cwd: Path | None = None) -> Path:
    """The DVC workspace: ``DVC_ROOT`` when a DVC command runs us (its temp copies included), else ``cwd``."""
    return Path(os.environ.get("DVC_ROOT") or cwd or Path.cwd()).resolve()


def tracking_uri(root: Path) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the SQLite store ``<workspace>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace(root) / 'mlflow.db'}"


def check_server(uri: str, timeout: float = 30) -> None:
    """Fail at once, naming the URI, when nothing answers at an http(s) tracking URI.

    MLflow's client would retry for minutes and end in a traceback. Only a failure to connect counts: any
    HTTP answer (a proxy without ``/health``, say) or a TLS problem is left to MLflow's own calls and settings.
    """
    import ssl
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except OSError as exc:  # URLError, a refused connection, a timeout
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return
        raise PipelineError(f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers there ({reason}); start one "
                            "(`make server` or `python -m pipeline server start`) or unset MLFLOW_TRACKING_URI"
                            ) from None


def check_access(uri: str) -> None:
    """Fail at once, naming the URI and the user, when the server refuses this environment's credentials (HTTP
    401 or 403: basic auth on, and ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` unset or wrong).

    MLflow's client would raise at the run's first call, with a traceback, after the stage had started.
    """
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except mlflow.exceptions.MlflowException as exc:
        status = exc.get_http_status_code()
        if status not in (401, 403):
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        who = f"as MLFLOW_TRACKING_USERNAME={user}" if user else "without credentials"
        raise PipelineError(f"MLFLOW_TRACKING_URI={uri}: the server refused access {who} (HTTP {status}); set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account it knows") from None


def _local_store(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]) if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Serialise creating the local store and experiments between processes (parallel DVC experiments)."""
    store = _local_store(tracking_uri(root))
    if store is None:  # a server serialises by itself
        yield
        return
    with file_lock(store.with_name(".mlflow.lock")):  # waits: another experiment's turn is short
        yield


def configure(root: Path, must_exist: bool = False) -> MlflowClient:
    """Point MLflow at this project's store and return a client.

    A new local store is created under :func:`store_lock` and switched to WAL mode (persistent in the file),
    so readers never block the writer and concurrent writers queue instead of failing; the URI carries a busy
    timeout for the same reason.

    Args:
        root: The project root (where ``dvc.yaml`` lives), or a temporary copy of it that DVC runs.
        must_exist: Refuse to create a new local store (for commands that only read one).

    Raises:
        PipelineError: If ``must_exist`` and there is no local store yet, or no server answers at an http(s)
            tracking URI.
    """
    uri = tracking_uri(root)
    store = _local_store(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
        check_access(uri)
    if store is not None and must_exist:
        if not store.is_file():
            raise PipelineError(
                f"{store}: no MLflow store here; run `make run` (or `dvc repro`) first, or set MLFLOW_TRACKING_URI"
            )
        uri = f"sqlite:///{store}?timeout={BUSY_TIMEOUT_S}"  # made by a writer: WAL mode and schema are in the file
    elif store is not None:
        with store_lock(root):
            with sqlite3.connect(store, timeout=BUSY_TIMEOUT_S) as db:
                db.execute("PRAGMA journal_mode=WAL")
            uri = f"sqlite:///{store}?timeout={BUSY_TIMEOUT_S}"
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates (migrates) the schema now, under the lock
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(client: MlflowClient, name: str, root: Path | None = None) -> str:
    """Return the id of experiment ``name``, creating it if needed.

    A new experiment in a local store keeps its artifacts in ``<workspace>/mlruns/<name>``: MLflow's default
    (``mlruns/<id>`` under the working directory) would put them in DVC's temporary copy for a queued
    experiment, which DVC deletes afterwards.
    """
    with store_lock(root or Path.cwd()):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if _local_store(tracking_uri(root or Path.cwd())) is not None:
            # no leading dot: an experiment named '.' or '..' (tracking.experiment, or a file stem) must not put
            # its artifacts in mlruns/ itself or in the workspace above it
            folder = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip(".") or "experiment"
            location = (workspace(root) / "mlruns" / folder).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # another worker made it first (a server has no file lock)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id
