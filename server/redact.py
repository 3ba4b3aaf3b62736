"""Keep secrets a client put in a URL (an admin token in a query string) out of the log."""

from __future__ import annotations

import re

MAX_LOGGED = 512  # characters of a path or query string written to the log

SECRET_NAMES = re.compile(r"(?i)((?:^|&)[^=&]*(?:token|secret|password|passwd|auth|key)[^=&]*=)[^&]*")
HIDDEN = "***"


def redact(text: str, secret: str | None) -> str:
    """`text` (a query string or path) with the values of secret-looking parameters, and the
    server's own admin token wherever it appears, replaced by ***."""
    text = SECRET_NAMES.sub(rf"\g<1>{HIDDEN}", text)
    if secret:
        text = text.replace(secret, HIDDEN)
    return text


def loggable(text: str, secret: str | None) -> str:
    """A path or query string as the call log writes it: cut to MAX_LOGGED characters, secrets
    hidden. Cheap for the usual short path with no query string."""
    if not text:
        return text
    if "=" in text or (secret and secret in text):
        text = redact(text, secret)
    return text if len(text) <= MAX_LOGGED else f"{text[:MAX_LOGGED]}…"
