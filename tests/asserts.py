"""The assertion every bad-input and fault test makes about how a command failed: one clear line, no traceback."""

from __future__ import annotations

import re
import subprocess

# a stage's or the CLI's error line (``clean: error: ...``, ``pipeline: error: ...``); DVC's own ``ERROR: failed to
# reproduce ...`` line, which follows a failed stage, is not one
ERROR_LINE = re.compile(r"^[\w.-]+: error: ")


def assert_one_error(done: subprocess.CompletedProcess[str], stage: str, alone: bool = False) -> str:
    """Check that ``done`` failed the way the README promises, and return its one error line.

    Args:
        done: The finished command (a stage, ``python -m pipeline ...`` or a ``dvc repro`` running stages).
        stage: Who must have printed the line (``ingest``, ``pipeline``...).
        alone: Whether that line must be all of stderr (a stage or command run directly, not under DVC).

    Returns:
        The error line, for the caller to check what it says.
    """
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"expected a failure, got exit 0:\n{output}"
    assert "Traceback" not in output, f"a traceback, where one clear line was expected:\n{output}"
    lines = [line for line in done.stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(lines) == 1, f"expected exactly one error line, got {len(lines)}:\n{done.stderr}"
    (line,) = lines
    assert line.startswith(f"{stage}: error: "), f"expected {stage!r} to say it, got: {line}"
    if alone:
        assert done.stderr.strip() == line, f"expected the error line and nothing else on stderr:\n{done.stderr}"
    return line
