"""The one exception type a stage raises for bad input, SIGTERM as an exception, and the wrapper that turns both
into an exit code."""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class PipelineError(Exception):
    """A user-facing failure: bad params, bad data, a missing or corrupt file.

    The message is one line that names the file, column or key, the value, and what was expected.
    """


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (see :func:`sigterm_raises`) so cleanup code runs.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def sigterm_raises(only_default: bool = False) -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in the main thread, so cleanup code runs (``finally``,
    ``except BaseException``); the previous handler is back afterwards.

    Used by every stage and command (:func:`run_main`), around an MLflow run
    (:func:`pipeline.tracking.tracked_run`) and around the team server's start and stop.

    Args:
        only_default: Change nothing unless SIGTERM has its default action: a SIGTERM the parent process
            ignores (inherited across ``exec``) stays ignored.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if only_default and previous != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler installed outside Python, which cannot be put back; the default is the nearest
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_main(main: Callable[[], None], name: str) -> None:
    """Run a stage's or command's ``main``: exit 1 with one line on a :class:`PipelineError`, and 130 / 143
    with one line on Ctrl-C / SIGTERM (the conventional 128 + signal number).

    Args:
        main: The function to run.
        name: The stage or command name, printed before the message.
    """
    # A crash in native code (pandas' parser, pyarrow, torch) prints the Python stack of every thread instead of
    # ending the stage as a bare "-11": the one clue a rare crash leaves in a CI log
    faulthandler.enable(all_threads=True)
    # SIGTERM as an exception in every stage, not only inside an MLflow run: the atomic writers' cleanup runs
    # (no temporary folder is left behind) and the stage ends with its one line and 143
    with sigterm_raises(only_default=True):
        try:
            main()
        except PipelineError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"{name}: interrupted (Ctrl-C)", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print(f"{name}: terminated (SIGTERM)", file=sys.stderr)
            sys.exit(143)
        except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
            sys.stderr.close()
            sys.exit(0)


def plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages read ``1`` rather than ``np.int64(1)``."""
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value
