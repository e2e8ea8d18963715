"""The shared file lock and process checks, against real processes: a second process holding the lock, a live
child, a finished one and a zombie."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.plumbing import alive, file_lock, group_members, proc_stat

ROOT = Path(__file__).resolve().parents[1]

# Takes the lock, says so, holds it a while, writes `released` as its last act inside the lock, then lets go.
HOLDER = """
import sys, time
from pathlib import Path
from pipeline.plumbing import file_lock

lock, folder, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
with file_lock(lock):
    (folder / "held").write_text("")
    time.sleep(hold)
    (folder / "released").write_text("")
"""


def _hold(tmp_path: Path, seconds: float) -> subprocess.Popen:
    """A second process that holds ``tmp_path/lock`` for ``seconds`` once it says ``held``."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "lock"), str(tmp_path), str(seconds)],
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 30
    while not (tmp_path / "held").exists():
        assert child.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.02)
    return child


def test_a_waiting_lock_is_taken_only_once_the_other_process_lets_go(tmp_path: Path) -> None:
    child = _hold(tmp_path, 1.0)
    try:
        with file_lock(tmp_path / "lock"):
            assert (tmp_path / "released").exists()  # we got in after the holder's last act, not beside it
    finally:
        child.wait(timeout=30)


def test_a_non_waiting_lock_refuses_at_once_with_its_message(tmp_path: Path) -> None:
    child = _hold(tmp_path, 30)
    try:
        # the holder keeps the lock for 30 s: a lock that waited would get it then and raise nothing
        with pytest.raises(PipelineError, match=r"^the folder is busy$"):
            with file_lock(tmp_path / "lock", wait=False, busy="the folder is busy"):
                pass
        with pytest.raises(PipelineError, match=rf"^{tmp_path / 'lock'}: locked by another process$"):
            with file_lock(tmp_path / "lock", wait=False):
                pass
    finally:
        child.kill()  # SIGKILL: no cleanup runs, yet the kernel drops the lock with the process
        child.wait(timeout=30)
    with file_lock(tmp_path / "lock", wait=False):
        assert not (tmp_path / "released").exists()


def test_a_second_handle_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    with file_lock(tmp_path / "lock"):
        with pytest.raises(PipelineError):
            with file_lock(tmp_path / "lock", wait=False):
                pass
    with file_lock(tmp_path / "lock", wait=False):  # released on leaving the block
        pass


def test_alive_tells_a_running_process_from_a_finished_one_and_a_zombie() -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=30)  # ended and reaped: the pid is gone
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert alive(live.pid) and alive(live.pid, named="time.sleep")
        assert not alive(live.pid, named="no-such-program")  # the pid of another program
        assert not alive(finished.pid)
        if proc_stat(zombie.pid) is not None:  # on Linux: exited, not reaped yet (Popen reaps only on poll/wait)
            deadline = time.monotonic() + 30
            while proc_stat(zombie.pid)[0] != "Z":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert not alive(zombie.pid)
        assert not alive(None) and not alive(0)
    finally:
        live.kill()
        live.wait(timeout=30)
        zombie.wait(timeout=30)
    assert not alive(live.pid)


def test_group_members_lists_a_live_group_and_nothing_once_it_ends() -> None:
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert group_members(leader.pid) == [leader.pid]
    finally:
        leader.kill()
        leader.wait(timeout=30)
    assert group_members(leader.pid) == []
