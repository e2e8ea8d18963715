"""SIGTERM as an exception (:func:`pipeline.errors.sigterm_raises`), delivered for real to this process; a crash in
native code under :func:`pipeline.errors.run_main`, produced for real in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.errors import Terminated, sigterm_raises


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler runs at the next bytecode; the sleep is cut short by the exception


def test_sigterm_raises_terminated_inside_and_the_previous_handler_is_back_after() -> None:
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        with pytest.raises(Terminated, match=f"signal {int(signal.SIGTERM)}"):
            with sigterm_raises():
                _sigterm_self()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert caught == [signal.SIGTERM]  # the handler from before the block, not Terminated
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_only_default_leaves_an_ignored_sigterm_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with sigterm_raises(only_default=True):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # ignored: nothing is raised
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_crash_in_native_code_under_run_main_prints_the_python_stack() -> None:
    # a real segmentation fault (reading address 0 through ctypes) in a stage's main: without faulthandler the
    # stage ends as a bare -11 and the log says nothing about where
    code = ("import ctypes\nfrom pipeline.errors import run_main\n"
            "def crash_in_native_code():\n    ctypes.string_at(0)\n"
            "run_main(crash_in_native_code, 'stage')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGSEGV, (done.returncode, done.stderr)
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
    assert "crash_in_native_code" in done.stderr, done.stderr
