"""`--fsync batch`: group commit in the server. Replies are written to the journal by the workers
(and by the cache's path) without waiting for the disk; the server holds them back until one
fdatasync, asked of the ledger once per round, covers every reply that landed meanwhile, then
reports them all done. The workers never wait for the disk, and under load one fdatasync covers the
batches of every worker and every cache hit of a round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from compute.worker import Reply, error_reply

log = logging.getLogger("lestats.commit")

RETRY_S = 0.05


class GroupCommit:
    """`deliver` replies that are written; they reach `deliver_durable` once synced."""

    def __init__(self, sync: Callable[[], str | None], deliver_durable: Callable[[list[Reply]], None]) -> None:
        """`sync`: blocking, makes every journal write so far durable; returns None or why not."""
        self._sync = sync
        self._deliver = deliver_durable
        self._held: list[Reply] = []
        self._running = False

    def deliver(self, replies: list[Reply]) -> None:
        self._held.extend(replies)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        """One fdatasync per round, for everything held when it began. If the ledger's manager is
        down, its writes are still in the kernel's cache (the same file): sync them once the
        supervisor has a new one. If the disk refuses, the replies end as errors with the reason."""
        try:
            while self._held:
                replies, self._held = self._held, []
                failure = await self._synced()
                if failure:
                    unsaved = error_reply(f"the result could not be saved: {failure}")
                    replies = [(job_id, "error", unsaved) for job_id, _, _ in replies]
                self._deliver(replies)
        finally:
            self._running = False

    async def _synced(self) -> str | None:
        warned = False
        while True:
            try:
                return await asyncio.to_thread(self._sync)
            except Exception as error:  # the manager is down; the supervisor restarts it
                if not warned:
                    log.warning("cannot sync the journal yet (%s); trying again until the ledger is back", error)
                    warned = True
                await asyncio.sleep(RETRY_S)
