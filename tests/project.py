"""Helpers for tests that run the real pipeline: copy the project into a temp git repo and run commands there."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a clone holds that the pipeline needs (outputs, stores and environments are left behind).
PROJECT_FILES = (
    "pipeline", "inputs", "dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvc/config", ".dvc/.gitignore",
)


def env() -> dict[str, str]:
    """The environment for child processes: this venv first on PATH, the local MLflow store, a git identity."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
        DVC_NO_ANALYTICS="1",
    )
    return out


def call(args: list[Any], cwd: Path, environ: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with ``environ`` (default :func:`env`); on an unexpected exit code, fail with its
    whole output."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=environ if environ is not None else env(),
                          capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """:func:`call` in the test environment."""
    return call(args, cwd, None, check)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """Stop a server started in its own process group: SIGTERM, up to 30 s to finish, then SIGKILL for whatever
    of the group outlived its parent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def make_project(dest: Path, **overrides: Any) -> Path:
    """Copy the project into ``dest``, apply dotted params overrides, and commit it to a fresh git repo."""
    for name in PROJECT_FILES:
        source = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    set_params(dest, **overrides)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "project"], dest)
    return dest


def set_params(project: Path, **overrides: Any) -> None:
    """Set params by dotted key, written with ``__`` for dots (``train__lr=0.1``)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run this venv's dvc in ``project``."""
    return run([str(BIN / "dvc"), *args], project, check=check)


def stages_run(output: str) -> set[str]:
    """The stage names a ``dvc repro`` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def churn_csv(rows: int = 40) -> str:
    """A small user table: an id column, an ISO date, a category, a number, and a yes/no target."""
    return "id,when,plan,spend,churned\n" + "".join(
        f"C{i:03d},2024-01-{i % 28 + 1:02d},{'basic' if i % 3 else 'pro'},{i * 1.5},{'yes' if i % 4 == 0 else 'no'}\n"
        for i in range(rows)
    )
