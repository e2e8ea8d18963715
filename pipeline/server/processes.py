"""Processes: free ports, MLflow's process group (stopped as one), the per-folder lock.

The lock, the process checks and SIGTERM as an exception are the shared ones (:mod:`pipeline.plumbing`,
:func:`pipeline.errors.sigterm_raises`); ``group_members`` is re-exported here for the server's callers.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from pipeline.errors import PipelineError
from pipeline.plumbing import cmdline, file_lock, group_members
from pipeline.server.layout import Layout

__all__ = ["group_members", "port_free", "stop_group"]


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as servers bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _mlflow_group(pgid: int | None) -> list[int]:
    """The live members of the recorded MLflow process group, if it is still MLflow's (pids get reused)."""
    if not pgid:
        return []
    members = group_members(pgid)
    if any(word in cmdline(pid) for pid in members for word in ("mlflow", "uvicorn", "gunicorn", "spawn_main")):
        return members
    return []


def stop_group(pgid: int, grace: float = 30) -> bool:
    """SIGTERM process group ``pgid``, SIGKILL whatever is left after ``grace`` seconds; whether any ran."""
    if not _mlflow_group(pgid):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not group_members(pgid):
            return True
    raise PipelineError(f"mlflow server (process group {pgid}) did not stop: {group_members(pgid)} remain")


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One start/stop at a time per server folder: a second one fails at once rather than wait."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.lock, wait=False,
                   busy=f"{layout.root}: another `server start` or `server stop` is running"):
        yield
