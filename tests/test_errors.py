"""SIGTERM as an exception (:func:`pipeline.errors.sigterm_raises`), delivered for real to this process."""

from __future__ import annotations

import os
import signal
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
