"""Small file helpers: the telling lines of a log, and private (mode 0600) files and secrets."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, since: int, prefer: tuple[str, ...] = (), last: bool = False, most: int = 1) -> str:
    """The most telling lines a log gained after byte ``since``: up to ``most`` lines containing one of
    ``prefer`` (the first ones, or with ``last`` the last one), else the last non-empty line."""
    try:
        with open(path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", "", line.strip())  # PostgreSQL's prefix
             for line in text.splitlines() if line.strip()]
    found = [line for line in lines if any(word in line for word in prefer)]
    if found:
        return found[-1] if last else "; ".join(found[:most])
    return lines[-1] if lines else "(nothing in the log)"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _secret(path: Path) -> str:
    """The secret stored in ``path``, generated (and stored, mode 0600) the first time."""
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    _write_private(path, value + "\n")
    return value
