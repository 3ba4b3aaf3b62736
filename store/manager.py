"""The manager process that owns the ledger, and the host that starts, watches and restarts it."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager
from typing import Any

from store.ledger import Ledger
from store.sharedledger import RetentionTuple, SharedLedger


def process_context() -> BaseContext:
    """forkserver: children fork from a clean single-threaded server with compute preloaded,
    never from the threaded server process itself."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["compute.worker"])
    return context


class LedgerManager(BaseManager):
    """The manager process; the Ledger object lives in it, and callers hold proxies."""


LedgerManager.register("Ledger", Ledger)
LedgerManager.register("SharedLedger", SharedLedger)


def _leave_signals_to_the_server() -> None:
    """The manager outlives a Ctrl-C or a SIGTERM sent to the whole process group: the server
    stops it last, after the drain has journalled every result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class LedgerHost:
    """Owns the manager process. Blocking: call from a thread, never from the event loop."""

    def __init__(self, state_dir: str, shared: RetentionTuple | None = None) -> None:
        """`shared`: the retention of a ledger shared by several front-ends (store/sharedledger.py)."""
        self._state_dir = state_dir
        self._shared = shared
        self._manager: LedgerManager | None = None
        self.ledger: Any = None
        self.restarts = 0

    def start(self, server_start: bool = True) -> None:
        manager = LedgerManager(ctx=process_context())
        manager.start(_leave_signals_to_the_server)
        self._manager = manager
        if self._shared is None:
            self.ledger = manager.Ledger(self._state_dir, server_start)  # type: ignore[attr-defined]  # registered above
        else:
            self.ledger = manager.SharedLedger(self._state_dir, server_start, self._shared)  # type: ignore[attr-defined]

    @property
    def pid(self) -> int | None:
        process = getattr(self._manager, "_process", None)
        return process.pid if process is not None else None

    def alive(self) -> bool:
        """BaseManager keeps its process in `_process`; there is no public accessor."""
        process = getattr(self._manager, "_process", None)
        return process is not None and process.is_alive()

    def restart(self) -> None:
        """A new manager and ledger; the ledger replays the journal, so nothing written is lost."""
        self.shutdown()
        self.start(server_start=False)
        self.restarts += 1

    def shutdown(self) -> None:
        if self._manager is not None:
            with contextlib.suppress(OSError):
                self._manager.shutdown()
            self._manager = None
            self.ledger = None
