"""MLflow plumbing shared by train, evaluate and the CLI: the store, experiments, lineage and environment tags.

The store is the SQLite database ``mlflow.db`` at the project root unless ``MLFLOW_TRACKING_URI`` points
elsewhere (a server, say). Artifacts of local runs go to ``mlruns/`` beside it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError


def tracking_uri(root: Path) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def configure(root: Path, must_exist: bool = False) -> MlflowClient:
    """Point MLflow at this project's store and return a client.

    Args:
        root: The project root (where ``dvc.yaml`` lives).
        must_exist: Refuse to create a new local store (for commands that only read one).

    Raises:
        PipelineError: If ``must_exist`` and there is no local store yet.
    """
    uri = tracking_uri(root)
    if must_exist and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise PipelineError(
            f"{uri.removeprefix('sqlite:///')}: no MLflow store here; run `make run` (or `dvc repro`) first, "
            "or set MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Return the id of experiment ``name``, creating it if needed.

    With the local SQLite store, MLflow keeps a new experiment's artifacts in ``mlruns/<id>`` under the
    working directory, which for a stage is the project root.
    """
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes, the hash DVC itself uses."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_tags(root: Path) -> dict[str, str]:
    """The commit and whether the working tree differs from it (``unknown`` outside a git checkout)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no")))}


def environment_tags() -> dict[str, str]:
    """Python, OS, key package versions, torch build and the accelerator this process can see."""
    import torch

    tags = {
        "env.python": sys.version.split()[0],
        "env.platform": platform.platform(),
        "env.cpu": platform.processor() or platform.machine(),
        "env.torch_threads": str(torch.get_num_threads()),
        "env.cuda": torch.version.cuda or "cpu",
        "env.cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "cpu",
        "env.gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for package in ("torch", "lightning", "mlflow", "dvc", "pandas", "scikit-learn", "numpy"):
        try:
            tags[f"env.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"env.{package}"] = "missing"
    return tags
