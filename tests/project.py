"""Helpers for tests that run the real pipeline: copy the project into a temp git repo and run commands there."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a clone holds that the pipeline needs (outputs, stores and environments are left behind).
PROJECT_FILES = (
    "pipeline", "inputs", "dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvc/config", ".dvc/.gitignore",
)
T = TypeVar("T")


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


def call(args: list[Any], cwd: Path, environ: dict[str, str] | None = None, check: bool = True,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with ``environ`` (default :func:`env`); on an unexpected exit code, fail with its
    whole output. ``timeout`` is a hang guard: a command still running after that many seconds is killed and the
    test fails saying so (a generous deadline, never a measure of speed)."""
    try:
        done = subprocess.run([str(a) for a in args], cwd=cwd, env=environ if environ is not None else env(),
                              capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(f"{' '.join(map(str, args))} still running after {timeout} s (killed): it hangs\n"
                             f"{hung.stdout or ''}\n{hung.stderr or ''}") from None
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def run(args: list[str], cwd: Path, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`call` in the test environment."""
    return call(args, cwd, None, check, timeout)


def wait_for(ready: Callable[[], T], what: str, timeout: float = 120, poll: float = 0.05) -> T:
    """Poll ``ready`` until it returns something truthy, and return that; fail naming ``what`` after ``timeout``
    seconds (a hang guard for a slow, shared machine, not a measure of speed)."""
    deadline = time.monotonic() + timeout
    while not (found := ready()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for {what}")
        time.sleep(poll)
    return found


def listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (``0.0.0.0`` or ``::`` for every interface), as
    the kernel reports them (/proc/net/tcp and tcp6, read by psutil)."""
    import psutil

    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def require(capable: bool, reason: str) -> None:
    """Skip a test that cannot run on this machine, saying why, except in CI (``CI=true``), where the missing
    capability fails the test: a claim the README makes must never go unchecked there without a word."""
    if capable:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: this check must run in CI", pytrace=False)
    pytest.skip(reason)


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


def dvc(project: Path, *args: str, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run this venv's dvc in ``project`` (``timeout``: as in :func:`call`)."""
    return run([str(BIN / "dvc"), *args], project, check=check, timeout=timeout)


def stages_run(output: str) -> set[str]:
    """The stage names a ``dvc repro`` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def churn_csv(rows: int = 40) -> str:
    """A small user table: an id column, an ISO date, a category, a number, and a yes/no target."""
    return "id,when,plan,spend,churned\n" + "".join(
        f"C{i:03d},2024-01-{i % 28 + 1:02d},{'basic' if i % 3 else 'pro'},{i * 1.5},{'yes' if i % 4 == 0 else 'no'}\n"
        for i in range(rows)
    )
