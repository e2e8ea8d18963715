"""Operating-system plumbing shared by the tracking store and the team server: file locks and live processes.

One implementation of each, so the tracking store's lock (which waits its turn) and the server folder's lock
(which refuses at once) differ by an argument only, as do "is the run's process still there?" (``runs cleanup``)
and "is PostgreSQL still there?" (``server status``). SIGTERM as an exception lives beside the exception it
raises, in :func:`pipeline.errors.sigterm_raises`.

Nothing here imports more than the standard library and :mod:`pipeline.errors`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import PipelineError


@contextmanager
def file_lock(path: Path, wait: bool = True, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing, its content never touched) for the block.

    An ``flock``: the kernel drops it when the holder exits, SIGKILL included, so a killed process never leaves
    a stale lock behind.

    Args:
        path: The lock file.
        wait: Wait until whoever holds the lock lets go; False: raise at once instead.
        busy: The message when ``wait`` is False and another holds the lock (default: ``<path>: locked by
            another process``).

    Raises:
        PipelineError: When ``wait`` is False and the lock is held elsewhere.
    """
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise PipelineError(busy or f"{path}: locked by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid`` from ``/proc``, or None when it is gone (or there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[2])


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces; empty when it is gone or unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int | None, named: str | None = None) -> bool:
    """Whether process ``pid`` runs: it exists and is not a zombie.

    Args:
        pid: The process id; None or 0 is never alive.
        named: Also require this text in its command line, so a pid the system has since handed to another
            program does not count (a process of another user counts: it cannot be looked into).
    """
    if not pid or pid < 0:  # 0 and negative ids name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    found = proc_stat(pid)
    if found is None:  # gone since the signal check, or no /proc to look in: then trust the signal check
        return not _has_proc()
    if found[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return named is None or named in cmdline(pid)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    if not _has_proc():  # no /proc: ask the kernel whether the group has anyone
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = proc_stat(int(entry.name))
            if found is not None and found[1] == pgid and found[0] != "Z":
                members.append(int(entry.name))
    return sorted(members)


def dvc_command() -> str:
    """This environment's ``dvc`` (beside its python, as ``make run`` uses), else the one on PATH."""
    import sys

    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else "dvc"
