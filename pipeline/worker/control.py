"""``python -m pipeline worker start|stop|status``: the workspace's worker process (see :mod:`pipeline.worker.server`)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.worker.client import private, receive, send, socket_path

DEFAULT_IDLE_MINUTES = 60.0
START_TIMEOUT_S = 120.0  # its imports take seconds; a generous bound for a loaded machine


def ask(root: Path, op: str) -> dict[str, Any] | None:
    """Send ``op`` (``status`` or ``stop``) to the worker serving ``root``; its status, or ``None`` if none
    answers."""
    path = socket_path(root)
    if not path.exists() or not private(path.parent):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        send(sock, {"op": op})
        reply, _ = receive(sock)
        return reply
    except OSError:
        return None
    finally:
        sock.close()


def log_path(root: Path) -> Path:
    """The worker's own output (its start and stop lines, and anything a failed start printed)."""
    return socket_path(root).with_suffix(".log")


def start(root: Path, idle_minutes: float = DEFAULT_IDLE_MINUTES) -> tuple[dict[str, Any], bool]:
    """Start a worker for ``root`` unless one answers already; its status, and whether it was started now.

    Raises:
        PipelineError: If ``root`` is not a project folder, ``idle_minutes`` is not positive, or the worker did not
            come up (with the last line it printed).
    """
    root = Path(root).resolve()
    if not (root / "params.yaml").is_file():
        raise PipelineError(f"{root}: expected the project's folder (with params.yaml); run `worker start` there")
    if not idle_minutes > 0:
        raise PipelineError(f"--idle-minutes = {idle_minutes}: expected a number of minutes above 0")
    running = ask(root, "status")
    if running is not None:
        return running, False
    log = log_path(root)
    socket_path(root).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.worker.server", "--root", str(root), "--idle-minutes", str(idle_minutes)],
            cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        status = ask(root, "status")
        if status is not None:
            return status, True
        if process.poll() is not None:
            lines = log.read_text().strip().splitlines()
            raise PipelineError(f"worker: did not start ({lines[-1] if lines else f'exit {process.returncode}'}; "
                                f"see {log})")
        time.sleep(0.1)
    process.terminate()
    raise PipelineError(f"worker: not answering after {START_TIMEOUT_S:.0f} s (see {log}); stopped it")


def stop(root: Path) -> dict[str, Any] | None:
    """Stop the worker serving ``root`` (runs in flight end as SIGTERM ends them); its last status, or ``None``."""
    root = Path(root).resolve()
    status = ask(root, "stop")
    if status is None:
        return None
    deadline = time.monotonic() + START_TIMEOUT_S
    while socket_path(root).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def describe(status: dict[str, Any]) -> list[str]:
    """Lines for ``worker start`` and ``worker status``."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["started"]))
    return [f"pid {status['pid']} serving {status['root']} since {since}",
            f"{status['served']} stage runs served, {status['running']} running; exits after "
            f"{status['idle_minutes']:g} idle minutes",
            f"started with {_variables(status.get('environment', {}))}: a stage run whose values differ runs in "
            "its own process",
            f"stage commands (dvc repro, dvc exp run) in this folder run in it; PIPELINE_WORKER=off runs them as before"]


def _variables(environment: dict[str, str]) -> str:
    """The load-time variables a worker was started with, as ``NAME=value`` (compare them with a stage's when it
    says the environment differs)."""
    if not environment:
        return "none of the load-time variables (OMP_*, MKL_*, CUDA_*, PYTHON*, TORCH* ...) set"
    return ", ".join(f"{k}={v}" for k, v in sorted(environment.items()))
