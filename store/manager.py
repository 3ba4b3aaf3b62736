"""The manager process that owns the ledger, and the host that starts, watches and restarts it."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager
from typing import Any

from store.channel import BLOCKING_TIMEOUT_S, AsyncChannel, ChannelServer, LedgerChannel, new_address
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
    """The manager process; the ledger lives in it and is reached through its channel
    (store/channel.py). The manager's own proxy only creates it and keeps it alive."""


def open_ledger(
    state_dir: str, server_start: bool, fsync: str, shared: RetentionTuple | None, address: str
) -> ChannelServer:
    """In the manager process: the ledger (shared by several front-ends, or one front-end's),
    served on `address`."""
    if shared is None:
        return ChannelServer(Ledger(state_dir, server_start, fsync), address)
    return ChannelServer(SharedLedger(state_dir, server_start, shared, fsync), address)


LedgerManager.register("open_ledger", open_ledger)


class LedgerHost:
    """Owns the manager process. Its methods block (call them from a thread, never from the event
    loop), except `finish` and `tell`, which are the event loop's. `ledger` is the blocking client
    (what workers and threads call); its address stays the same across restarts."""

    def __init__(self, state_dir: str, fsync: str = "batch", shared: RetentionTuple | None = None) -> None:
        """`shared`: the retention of a ledger shared by several front-ends (store/sharedledger.py)."""
        self._state_dir = state_dir
        self._fsync = fsync
        self._shared = shared
        self._manager: LedgerManager | None = None
        self._server: Any = None  # the manager's proxy of the channel server: keeps it alive there
        self._pidfd = -1
        self.address = new_address()
        self.ledger: Any = None
        self._restarts = 0
        self._journal: AsyncChannel | None = None

    async def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Journal finished replies from the event loop (what the reply cache's hits are)."""
        failure: str | None = await self.tell("finish", replies)
        return failure

    async def tell(self, method: str, *args: Any) -> Any:
        """Call a ledger method from the event loop, through the channel, without a thread.
        Journal writes get their own connection, with a timeout that allows for a slow fdatasync
        or a compaction: a read on the store's connection never waits for one."""
        if self._journal is None:
            self._journal = AsyncChannel(self.address, BLOCKING_TIMEOUT_S)
        return await self._journal.call(method, *args)

    def start(self, server_start: bool = True) -> None:
        manager = LedgerManager(ctx=process_context())
        # The manager outlives a Ctrl-C or a SIGTERM sent to the whole process group: the server
        # stops it last, after the drain has journalled every result. It dies with the server.
        manager.start(as_child_of, (os.getpid(),))
        self._manager = manager
        self._pidfd = os.pidfd_open(manager._process.pid)  # type: ignore[attr-defined]
        # open_ledger is registered above; the manager makes a proxy method for it.
        self._server = manager.open_ledger(  # type: ignore[attr-defined]
            self._state_dir, server_start, self._fsync, self._shared, self.address
        )
        self.ledger = LedgerChannel(self.address)

    @property
    def restarts(self) -> int:
        """How many times the manager was started again."""
        return self._restarts

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
        self._restarts += 1

    def shutdown(self) -> None:
        if self._manager is not None:
            with contextlib.suppress(OSError):
                self._manager.shutdown()
            self._manager = None
            self._server = None
        if self.ledger is not None:
            self.ledger.disconnect()
            self.ledger = None
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
