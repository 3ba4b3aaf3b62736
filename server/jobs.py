"""The server's own table of jobs: ids, which are running, and every finished reply.

A finished reply never changes, so the server keeps it here and answers get_results without any
round trip. Ids are reserved in the ledger a block ahead of use, so that after a crash the next run
starts beyond every id that may have been handed out and never issues one twice.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import orjson

from compute.worker import Reply
from store.ledger import Recovered

RUNNING_REPLY = orjson.dumps({"status": "running"})
INTERRUPTED_REPLY = orjson.dumps({"status": "error", "reason": "interrupted by a restart"})

Reserve = Callable[[int], Awaitable[None]]


class JobTable:
    """Job ids, states and replies; all of it touched only from the event loop."""

    def __init__(self, recovered: Recovered, reserve: Reserve, block: int = 10_000) -> None:
        self.replies: dict[int, bytes] = {job: reply for job, (_, reply) in recovered.replies.items()}
        self.statuses: dict[int, str] = {job: status for job, (status, _) in recovered.replies.items()}
        self.first_id = recovered.next_id
        self._next_id = recovered.next_id
        self._reserve = reserve
        self._block = block
        self._reserved = recovered.next_id - 1
        self._reserving: asyncio.Task[None] | None = None
        self.running: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def next_id(self) -> int:
        return self._next_id

    async def open(self) -> int:
        """A new job id, running; waits only when the reserved block is used up."""
        if self._reserving is None and self._next_id + self._block // 2 > self._reserved:
            self._reserving = asyncio.ensure_future(self._extend(self._reserved + self._block))
        while self._next_id > self._reserved:
            assert self._reserving is not None
            await asyncio.shield(self._reserving)
        job_id = self._next_id
        self._next_id += 1
        self.running.add(job_id)
        self.statuses[job_id] = "running"
        self._idle.clear()
        return job_id

    async def _extend(self, up_to: int) -> None:
        try:
            await self._reserve(up_to)
            self._reserved = up_to
        finally:
            self._reserving = None

    def finish(self, replies: list[Reply]) -> None:
        """Record replies; the first reply of a job wins (a job sent again may answer twice)."""
        for job_id, status, reply in replies:
            if job_id not in self.running:
                continue
            self.running.discard(job_id)
            self.statuses[job_id] = status
            self.replies[job_id] = reply
        if not self.running:
            self._idle.set()

    def reply(self, job_id: int) -> bytes | None:
        """get_results' body for a job, or None for an id never issued."""
        reply = self.replies.get(job_id)
        if reply is not None:
            return reply
        if job_id in self.running:
            return RUNNING_REPLY
        if 0 < job_id < self.first_id:
            return INTERRUPTED_REPLY
        return None

    async def drained(self) -> None:
        await self._idle.wait()
