"""The server's own table of jobs: ids, which are running, and the finished replies it keeps.

A finished reply never changes, so the server keeps it here and answers get_results without any
round trip. Ids are reserved in the ledger a block ahead of use, so that after a crash the next run
starts beyond every id that may have been handed out and never issues one twice; the ledger also
hears every few tens of ms how far ids were actually issued (`issued_up_to`).

Retention keeps the newest `keep` jobs by id, whose replies add up to at most `max_bytes` (and, with
a time to live, only those finished within it). Expiry moves a watermark up through the ids, so
"expired" (below the watermark) is told apart from "never issued" (at or above the next id)
without remembering every dropped id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from compute.worker import Reply
from store.ledger import Recovered

RUNNING_REPLY = orjson.dumps({"status": "running"})
EXPIRED_REPLY = orjson.dumps({"status": "error", "reason": "expired"})
INVALID_REPLY = orjson.dumps({"status": "error", "reason": "Invalid job_id"})

Reserve = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Retention:
    keep: int = 100_000
    max_bytes: int = 512 * 2**20
    ttl_s: float | None = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JobTable:
    """Job ids, states and replies; all of it touched only from the event loop."""

    def __init__(self, recovered: Recovered, reserve: Reserve, retention: Retention, block: int = 10_000) -> None:
        self.replies: dict[int, bytes] = {}
        self.reply_bytes = 0
        self.statuses: dict[int, str] = {}
        self._finished_at: dict[int, float] = {}
        now = time.monotonic()
        for job_id in sorted(recovered.replies):
            status, reply = recovered.replies[job_id]
            self.replies[job_id], self.statuses[job_id], self._finished_at[job_id] = reply, status, now
            self.reply_bytes += len(reply)
        self.expired_below = recovered.expired_below
        self._next_id = recovered.next_id
        self._retention = retention
        self._reserve = reserve
        self._block = block
        self._reserved = recovered.next_id - 1
        self._reserving: asyncio.Task[None] | None = None
        self.running: set[int] = set()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.expire()

    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def issued_up_to(self) -> int:
        return self._next_id - 1

    async def open(self) -> int:
        """A new job id, running; waits only when the reserved block is used up."""
        while (job_id := self.open_now()) is None:
            assert self._reserving is not None
            await asyncio.shield(self._reserving)
        return job_id

    def open_now(self) -> int | None:
        """A new job id, running, or None when the reserved block is used up (then `open` waits)."""
        if self._reserving is None and self._next_id + self._block // 2 > self._reserved:
            self._reserving = asyncio.ensure_future(self._extend(self._reserved + self._block))
        if self._next_id > self._reserved:
            return None
        job_id = self._next_id
        self._next_id += 1
        self.running.add(job_id)
        self.statuses[job_id] = "running"
        self._idle.clear()
        return job_id

    def adopt(self, job_id: int) -> None:
        """A job whose id came from a shared store (server/shared.py): running here."""
        self._next_id = max(self._next_id, job_id + 1)
        self.running.add(job_id)
        self.statuses[job_id] = "running"
        self._idle.clear()

    async def _extend(self, up_to: int) -> None:
        try:
            await self._reserve(up_to)
            self._reserved = up_to
        finally:
            self._reserving = None

    def finish(self, replies: list[Reply]) -> None:
        """Record replies; the first reply of a job wins (a job sent again may answer twice)."""
        now = time.monotonic()
        for job_id, status, reply in replies:
            if job_id not in self.running:
                continue
            self.running.discard(job_id)
            self.statuses[job_id] = status
            self.replies[job_id] = reply
            self.reply_bytes += len(reply)
            self._finished_at[job_id] = now
            for waiter in self._waiters.pop(job_id, ()):
                _wake(waiter)
        if not self.running:
            self._idle.set()
        if len(self.replies) > self._retention.keep or self.reply_bytes > self._retention.max_bytes:
            self.expire()

    def expire(self) -> int:
        """Drop finished jobs beyond the newest `keep` or older than the time to live; returns the
        new watermark. A running job is never dropped, so the watermark waits for it."""
        keep, ttl_s = self._retention.keep, self._retention.ttl_s
        oldest_kept = time.monotonic() - ttl_s if ttl_s is not None else None
        while self.expired_below < self._next_id and self.expired_below not in self.running:
            job_id = self.expired_below
            finished_at = self._finished_at.get(job_id)
            too_many = len(self.replies) > keep or self.reply_bytes > self._retention.max_bytes
            if finished_at is None:  # an id skipped after a crash: never issued
                if not too_many:
                    break
            elif not (too_many or (oldest_kept is not None and finished_at < oldest_kept)):
                break
            self.reply_bytes -= len(self.replies.pop(job_id, b""))
            self.statuses.pop(job_id, None)
            self._finished_at.pop(job_id, None)
            self.expired_below += 1
        return self.expired_below

    def finished_since(self, age_s: float) -> list[Reply]:
        """The replies of jobs finished in the last `age_s` seconds (to save them again)."""
        since = time.monotonic() - age_s
        return [
            (job_id, self.statuses[job_id], self.replies[job_id])
            for job_id, finished_at in self._finished_at.items()
            if finished_at >= since and job_id in self.replies
        ]

    def lookup(self, job_id: int) -> tuple[int, bytes]:
        """get_results' status code and body for a job id."""
        reply = self.replies.get(job_id)
        if reply is not None:
            return 200, reply
        if job_id in self.running:
            return 200, RUNNING_REPLY
        if 0 < job_id < self.expired_below:
            return 404, EXPIRED_REPLY
        return 404, INVALID_REPLY

    async def wait(self, job_id: int, timeout_s: float) -> None:
        """Return when the job has finished, or after `timeout_s`, whichever comes first."""
        if job_id not in self.running:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters.setdefault(job_id, [])
        waiters.append(waiter)
        timer = loop.call_later(timeout_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in waiters:
                waiters.remove(waiter)

    async def drained(self) -> None:
        await self._idle.wait()
