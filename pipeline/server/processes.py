"""Processes: free ports, process groups (MLflow's, stopped as one), the per-folder lock, SIGTERM."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pipeline.errors import PipelineError, Terminated
from pipeline.server.layout import Layout


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


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid`` from ``/proc``, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel whether the group has anyone
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _proc_stat(int(entry.name))
            if found is not None and found[1] == pgid and found[0] != "Z":
                members.append(int(entry.name))
    return sorted(members)


def _mlflow_group(pgid: int | None) -> list[int]:
    """The live members of the recorded MLflow process group, if it is still MLflow's (pids get reused)."""
    if not pgid:
        return []
    members = group_members(pgid)
    if any(word in _cmdline(pid) for pid in members for word in ("mlflow", "uvicorn", "gunicorn", "spawn_main")):
        return members
    return []


def _alive(pid: int | None) -> bool:
    found = _proc_stat(pid) if pid else None
    return found is not None and found[0] != "Z"


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
    """One start/stop at a time per server folder."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"{layout.root}: another `server start` or `server stop` is running") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM during start or stop raises :class:`Terminated`, so the cleanup code runs."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
