"""The manager process that owns the ledger, and the host that starts, watches and restarts it."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager
from typing import Any

from store.ledger import Ledger
from store.lifeline import as_child_of
from store.sharedledger import RetentionTuple, SharedLedger


def process_context() -> BaseContext:
    """forkserver: children fork from a clean single-threaded server with compute preloaded,
    never from the threaded server process itself; it and they leave SIGINT and SIGTERM to the
    server (`store.forkserver_preload`)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["store.forkserver_preload", "compute.worker"])
    return context


class LedgerManager(BaseManager):
    """The manager process; the Ledger object lives in it, and callers hold proxies."""


LedgerManager.register("Ledger", Ledger)
LedgerManager.register("SharedLedger", SharedLedger)


class LedgerHost:
    """Owns the manager process. Blocking: call from a thread, never from the event loop."""

    def __init__(self, state_dir: str, fsync: str = "batch", shared: RetentionTuple | None = None) -> None:
        """`shared`: the retention of a ledger shared by several front-ends (store/sharedledger.py)."""
        self._state_dir = state_dir
        self._fsync = fsync
        self._shared = shared
        self._manager: LedgerManager | None = None
        self._pidfd = -1
        self.ledger: Any = None
        self.restarts = 0

    def start(self, server_start: bool = True) -> None:
        manager = LedgerManager(ctx=process_context())
        # The manager outlives a Ctrl-C or a SIGTERM sent to the whole process group: the server
        # stops it last, after the drain has journalled every result. It dies with the server.
        manager.start(as_child_of, (os.getpid(),))
        self._manager = manager
        self._pidfd = os.pidfd_open(manager._process.pid)  # type: ignore[attr-defined]
        # Ledger and SharedLedger are registered above; the manager makes a proxy method for each.
        if self._shared is None:
            self.ledger = manager.Ledger(self._state_dir, server_start, self._fsync)  # type: ignore[attr-defined]
        else:
            self.ledger = manager.SharedLedger(  # type: ignore[attr-defined]
                self._state_dir, server_start, self._shared, self._fsync
            )

    @property
    def pid(self) -> int | None:
        process = getattr(self._manager, "_process", None)
        return process.pid if process is not None else None

    def alive(self) -> bool:
        """Whether the manager process itself still runs, seen through a pidfd. Not
        `Process.is_alive()`: a forkserver child's liveness is read from the forkserver, so
        the forkserver's death would make a live manager look dead (and a second one be started)."""
        return self._pidfd >= 0 and not select.select([self._pidfd], [], [], 0)[0]

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
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
