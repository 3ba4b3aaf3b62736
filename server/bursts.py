"""Log a burst of the same error once, with a count, instead of once per occurrence.

Hundreds of clients making the same mistake at once (or a file-descriptor limit refusing every
accept) once wrote thousands of identical lines. The first occurrence of a kind is logged at once;
the others within the next `window_s` seconds are counted and logged as one line when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any


class BurstLog:
    """Per kind of error (a short key naming it, never client data): one line, then a count."""

    def __init__(self, logger: logging.Logger, window_s: float = 10.0) -> None:
        self._logger = logger
        self._window_s = window_s
        self._counts: dict[str, int] = {}

    def error(self, kind: str, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        if kind in self._counts:
            self._counts[kind] += 1
            return
        self._counts[kind] = 0
        self._logger.error(message, *args, exc_info=exc_info)
        try:
            asyncio.get_running_loop().call_later(self._window_s, self._close_window, kind)
        except RuntimeError:  # no loop (a unit test): nothing is counted
            del self._counts[kind]

    def _close_window(self, kind: str) -> None:
        more = self._counts.pop(kind, 0)
        if more:
            self._logger.error("%s: %d more in the last %g s", kind, more, self._window_s)
