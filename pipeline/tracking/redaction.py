"""Secret redaction: which values of the environment are secrets, and text with them masked."""

from __future__ import annotations

import os
import re

# Secrets in the environment, masked wherever the pipeline logs text it did not write itself (the git diff): the
# value of every variable named like a secret, and the password of every URL with credentials (DATABASE_URL, ...).
# Values shorter than SECRET_MIN_LENGTH are left alone, or common words in a diff would be masked too.
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|COOKIE", re.IGNORECASE)
URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:([^/@\s]+)@")
SECRET_MIN_LENGTH = 8


def secrets(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(value, variable name) of each secret in the environment, the longest value first."""
    environ = os.environ if environ is None else environ
    found = [(v, k) for k, v in environ.items() if SECRET_NAME.search(k)]
    found += [(m.group(1), k) for k, v in environ.items() for m in URL_PASSWORD.finditer(v)]
    # the longest first, so a value that contains another is masked whole
    return sorted({(v, k) for v, k in found if len(v) >= SECRET_MIN_LENGTH}, key=lambda pair: (-len(pair[0]), pair))


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with each secret of the environment (:func:`secrets`) replaced by ``[redacted NAME]``."""
    for value, name in secrets(environ):
        text = text.replace(value, f"[redacted {name}]")
    return text
