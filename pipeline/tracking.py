"""MLflow plumbing shared by train, evaluate and the CLI: the store, experiments, lineage and environment tags.

The store is the SQLite database ``mlflow.db`` at the workspace root unless ``MLFLOW_TRACKING_URI`` points
elsewhere (a server, say). Artifacts of local runs go to ``mlruns/`` beside it. The workspace is where
``dvc.yaml`` lives; ``dvc exp run --temp`` and queued experiments run in a copy under ``.dvc/tmp/exps``, and
DVC tells them the workspace in ``DVC_ROOT``, so every experiment lands in the one store the user looks at.
Several experiments may write at once: the store runs in SQLite's WAL mode with a busy timeout, and creating
the store or an experiment happens under a file lock. None of that applies to a tracking server
(``python -m pipeline server start``): it serialises writers itself and chooses where artifacts go.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError, Terminated

BUSY_TIMEOUT_S = 60  # how long a writer waits for another's SQLite transaction before failing


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


def _local_store(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]) if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Serialise creating the local store and experiments between processes (parallel DVC experiments)."""
    store = _local_store(tracking_uri(root))
    if store is None:  # a server serialises by itself
        yield
        return
    with open(store.with_name(".mlflow.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    if store is not None:
        if must_exist and not store.is_file():
            raise PipelineError(
                f"{store}: no MLflow store here; run `make run` (or `dvc repro`) first, or set MLFLOW_TRACKING_URI"
            )
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


@contextmanager
def tracked_run(**start: object) -> Iterator[mlflow.ActiveRun]:
    """``mlflow.start_run(**start)`` that ends FAILED on an exception and KILLED on Ctrl-C or SIGTERM.

    MLflow alone marks an interrupted run FAILED, and a SIGTERM would end the process with the run left
    RUNNING; here SIGTERM becomes :class:`Terminated` in the main thread so the run is closed as KILLED. The
    run is tagged with this process's ``pid`` and ``host``: a SIGKILL leaves it RUNNING, and
    ``python -m pipeline runs cleanup`` later finds that process gone.
    """

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with mlflow.start_run(**start) as run:
            mlflow.set_tags({"pid": str(os.getpid()), "host": socket.gethostname()})
            try:
                yield run
            except (KeyboardInterrupt, Terminated):
                mlflow.end_run("KILLED")
                raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running pipeline process (a pid reused by another program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    try:
        return b"pipeline" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal check


def cleanup_runs(client: MlflowClient) -> list[tuple[str, str]]:
    """Mark KILLED every RUNNING run whose process (tags ``pid``, ``host``) is gone from this host.

    Returns:
        (run id, what was done) for each RUNNING run found.
    """
    here = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    done: list[tuple[str, str]] = []
    if not experiments:
        return done
    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'"):
        pid, host = run.data.tags.get("pid"), run.data.tags.get("host")
        if host != here or pid is None:
            done.append((run.info.run_id, f"left RUNNING: started on host {host!r}, this is {here!r}"))
        elif alive(int(pid)):
            done.append((run.info.run_id, f"left RUNNING: process {pid} is still running"))
        else:
            client.set_terminated(run.info.run_id, "KILLED")
            done.append((run.info.run_id, f"marked KILLED: process {pid} is gone"))
    return done


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes, the hash DVC itself uses."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_tags(root: Path) -> dict[str, str]:
    """The DVC experiment running us (if any) and the md5 of every stage output ``dvc.lock`` records so far.

    Train runs after ingest, split, clean and scale have been locked, so their output hashes say exactly which
    data this run saw.
    """
    import yaml

    tags = {f"dvc.{key}": os.environ[env] for key, env in
            (("experiment", "DVC_EXP_NAME"), ("baseline_rev", "DVC_EXP_BASELINE_REV")) if os.environ.get(env)}
    lock = Path(root) / "dvc.lock"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    except (OSError, yaml.YAMLError):
        stages = {}
    for stage, entry in stages.items():
        for out in entry.get("outs", []) or []:
            if "md5" in out:
                tags[f"dvc.out.{out['path']}"] = out["md5"]
    return tags


def run_name(root: Path, params: dict[str, object]) -> str | None:
    """A run name that says what changed: ``<dvc experiment>: train.lr=0.003 model.dropout=0.2``.

    ``params`` (flattened) are compared with ``params.yaml`` at the experiment's baseline commit (or HEAD
    outside an experiment), so runs of a grid search read apart in the MLflow UI. None (MLflow picks a name)
    when nothing changed and DVC gave no experiment name.
    """
    import yaml

    from pipeline.config import flatten, parse_params

    baseline = os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD"
    done = subprocess.run(["git", "show", f"{baseline}:params.yaml"], cwd=root, capture_output=True, text=True,
                          check=False)
    before: dict[str, object] = {}
    if done.returncode == 0:
        try:
            before = flatten(parse_params(yaml.safe_load(done.stdout)))
        except (PipelineError, yaml.YAMLError):  # an old or broken baseline only costs the name its detail
            before = {}
    changed = " ".join(f"{k}={v}" for k, v in params.items() if before and before.get(k) != v)
    experiment = os.environ.get("DVC_EXP_NAME")
    name = ": ".join(part for part in (experiment, changed) if part)
    return name[:250] or None


# Files a dirty run's diff leaves out: DVC's config may hold remote credentials (`dvc remote modify` without
# --local writes them there), and where data is pushed changes nothing the run computes.
DIFF_EXCLUDES = (":(exclude).dvc/config", ":(exclude).dvc/config.local")
# Secrets in the environment, masked wherever the pipeline logs text it did not write itself (the git diff): the
# value of every variable named like a secret, and the password of every URL with credentials (DATABASE_URL, ...).
# Values shorter than SECRET_MIN_LENGTH are left alone, or common words in a diff would be masked too.
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|COOKIE", re.IGNORECASE)
URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:([^/@\s]+)@")
SECRET_MIN_LENGTH = 8


def secrets(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(value, variable name) of each secret in the environment, the longest value first."""
    environ = os.environ if environ is None else environ
    found = [(v, k) for k, v in environ.items() if SECRET_NAME.search(k)]
    found += [(m.group(1), k) for k, v in environ.items() for m in URL_PASSWORD.finditer(v)]
    # the longest first, so a value that contains another is masked whole
    return sorted({(v, k) for v, k in found if len(v) >= SECRET_MIN_LENGTH}, key=lambda pair: (-len(pair[0]), pair))


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with each secret of the environment (:func:`secrets`) replaced by ``[redacted NAME]``."""
    for value, name in secrets(environ):
        text = text.replace(value, f"[redacted {name}]")
    return text


def git_diff(root: Path) -> str:
    """``git diff HEAD`` of tracked files (what a dirty run's code differs by), DVC's config left out and secrets
    from the environment masked; empty outside git."""
    done = subprocess.run(["git", "diff", "HEAD", "--", ":(top)", *DIFF_EXCLUDES], cwd=root, capture_output=True,
                          text=True, check=False)
    return redact(done.stdout) if done.returncode == 0 else ""


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether the working tree differs from it (``unknown`` outside a git checkout)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no")))}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux; ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver() -> str:
    """The NVIDIA driver version, or ``none`` without one (torch reports CUDA's version, not the driver's)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "none"


def pip_freeze() -> str:
    """Every installed distribution as ``name==version`` lines, sorted (what ``pip freeze`` lists)."""
    names = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return "".join(f"{name}=={version}\n" for name, version in sorted(names.items()))


def environment_tags(root: Path | None = None) -> dict[str, str]:
    """Python, OS, CPU, key package versions, torch build, GPU and driver, and the lock file's hash."""
    import torch

    lock = Path(root or Path.cwd()) / "requirements.lock"
    tags = {
        "env.python": sys.version.split()[0],
        "env.platform": platform.platform(),
        "env.cpu": cpu_model(),
        "env.cpu_count": str(os.cpu_count()),
        "env.torch_threads": str(torch.get_num_threads()),
        "env.cuda": torch.version.cuda or "cpu",
        "env.cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "cpu",
        "env.gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "env.gpu_driver": gpu_driver() if torch.cuda.is_available() else "none",
        "env.requirements_lock_md5": file_md5(lock) if lock.is_file() else "missing",
    }
    for package in ("torch", "lightning", "mlflow", "dvc", "pandas", "scikit-learn", "numpy"):
        try:
            tags[f"env.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"env.{package}"] = "missing"
    return tags
