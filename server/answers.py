"""Answer a query from a bounded cache of earlier replies when the same query was answered before.

A cached reply is exact (the data set is immutable while loaded), so a hit skips the pool: the job
is only journalled, and the hits that arrive together are journalled in one call to the ledger,
made from the event loop (no thread). Under load (hits waiting when a call returns) the next call
waits `gather_s` for more to join it: a ledger round trip costs the server and the manager far
more CPU than the job it journals, so fewer, fuller calls pay for the short wait. Until that
write returns the job is "running", as every job is until its result is on disk. A miss goes to
the pool, and the pool's "done" replies fill the cache. If the ledger cannot be reached, the hits
go through the pool instead, whose batches are parked and sent again once the supervisor has
restarted the ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from compute.dispatch import Dispatcher
from compute.queries import Query
from compute.worker import Reply, error_reply

log = logging.getLogger("lestats.answers")


class AnswerCache:
    """Query -> reply bytes of a finished job, least recently used dropped beyond the bounds."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._replies: dict[Query, bytes] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.from_store = 0  # of the misses: answered by the store shared with other front-ends

    def __contains__(self, query: Query) -> bool:
        return query in self._replies

    def get(self, query: Query) -> bytes | None:
        reply = self._replies.pop(query, None)
        if reply is None:
            self.misses += 1
            return None
        self._replies[query] = reply
        self.hits += 1
        return reply

    def put(self, query: Query, reply: bytes) -> None:
        if self.max_entries == 0 or len(reply) > self.max_bytes or query in self._replies:
            return
        self._replies[query] = reply
        self.bytes += len(reply)
        while len(self._replies) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._replies))
            self.bytes -= len(self._replies.pop(oldest))

    def forget_dataset(self, dataset: str) -> None:
        for query in [query for query in self._replies if query.dataset == dataset]:
            self.bytes -= len(self._replies.pop(query))

    def stats(self) -> dict[str, Any]:
        asked = self.hits + self.misses
        return {
            "entries": len(self._replies),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / asked, 4) if asked else None,
            "from_store": self.from_store,
        }


class Answers:
    """Where a new job goes: the cache (then only the journal) or the pool."""

    def __init__(
        self,
        cache: AnswerCache,
        journal: Callable[[list[Reply]], Awaitable[str | None]],
        deliver: Callable[[list[Reply]], None],
        gather_s: float = 0.0,
    ) -> None:
        self.cache = cache
        self.gather_s = gather_s
        self.dispatcher: Dispatcher | None = None
        self._journal = journal
        self._deliver = deliver
        self._hits: list[tuple[int, Query, bytes]] = []
        self._journalling = False

    def submit(self, job_id: int, query: Query, known: bytes | None = None) -> None:
        """`known`: the reply the shared store had for this query (server/shared.py)."""
        assert self.dispatcher is not None
        reply = self.cache.get(query) if self.cache.max_entries else None
        if reply is None and known is not None:
            reply = known
            self.cache.from_store += 1
            self.cache.put(query, known)
        if reply is None:
            self.dispatcher.submit(job_id, query)
            return
        self._hits.append((job_id, query, reply))
        if not self._journalling:
            self._journalling = True
            asyncio.get_running_loop().create_task(self._journal_hits())

    async def _journal_hits(self) -> None:
        """Journal every waiting hit in one ledger call, until none are left; under load, gather."""
        try:
            while self._hits:
                hits, self._hits = self._hits, []
                replies = [(job_id, "done", reply) for job_id, _, reply in hits]
                try:
                    failure = await self._journal(replies)
                except Exception as error:  # the ledger is down: the pool path parks and retries
                    log.error("journalling cached answers: %s; sending them through the pool", error)
                    for job_id, query, _ in hits:
                        self.dispatcher.submit(job_id, query)  # type: ignore[union-attr]
                    continue
                if failure:
                    unsaved = error_reply(f"the result could not be saved: {failure}")
                    replies = [(job_id, "error", unsaved) for job_id, _, _ in hits]
                self._deliver(replies)
                if self._hits and self.gather_s:
                    await asyncio.sleep(self.gather_s)
        finally:
            self._journalling = False

    def learn(self, jobs: list[tuple[int, Query]], replies: list[Reply]) -> None:
        """The pool's finished replies, in the order of the batch's jobs."""
        for (_, query), (_, status, reply) in zip(jobs, replies, strict=True):
            if status == "done":
                self.cache.put(query, reply)
