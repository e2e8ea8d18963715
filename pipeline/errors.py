"""The one exception type a stage raises for bad input, and the wrapper that turns it into an exit code."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A user-facing failure: bad params, bad data, a missing or corrupt file.

    The message is one line that names the file, column or key, the value, and what was expected.
    """


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (see :func:`pipeline.tracking.tracked_run`) so cleanup code runs.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it.
    """


def run_main(main: Callable[[], None], name: str) -> None:
    """Run a stage's or command's ``main``: exit 1 with one line on a :class:`PipelineError`, and 130 / 143
    with one line on Ctrl-C / SIGTERM (the conventional 128 + signal number).

    Args:
        main: The function to run.
        name: The stage or command name, printed before the message.
    """

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    # SIGTERM as an exception in every stage, not only inside an MLflow run: the atomic writers' cleanup runs
    # (no temporary folder is left behind) and the stage ends with its one line and 143
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)
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
