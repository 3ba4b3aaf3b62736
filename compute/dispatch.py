"""Hand jobs to the process pool in batches, from the event loop, without ever waiting on it.

At most one batch per worker is in flight. Jobs that arrive while every worker is busy queue up and
leave together as the next batch, so under light load a job goes alone (lowest latency) and under
heavy load the per-job cost of a pool round trip shrinks with the batch. `apply_async` only puts the
batch on the pool's queue; the pool's own threads pickle and send it, and its result thread hands
the replies back to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from multiprocessing.pool import Pool
from typing import Callable

from compute.queries import Query
from compute.worker import Reply, error_reply, run_batch

Deliver = Callable[[list[Reply]], None]


class Dispatcher:
    """Batches (job id, query) pairs onto a pool and delivers the replies in the loop."""

    def __init__(
        self, pool: Pool, workers: int, loop: asyncio.AbstractEventLoop, deliver: Deliver, max_batch: int = 256
    ) -> None:
        self._pool = pool
        self._workers = workers
        self._loop = loop
        self._deliver = deliver
        self._max_batch = max_batch
        self._pending: deque[tuple[int, Query]] = deque()
        self._in_flight = 0
        self._scheduled = False

    @property
    def queued(self) -> int:
        return len(self._pending)

    def submit(self, job_id: int, query: Query) -> None:
        """Queue a job; it leaves with whatever else arrives in this turn of the loop."""
        self._pending.append((job_id, query))
        if not self._scheduled and self._in_flight < self._workers:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        free = self._workers - self._in_flight
        while self._pending and free > 0:
            size = min(self._max_batch, -(-len(self._pending) // free))
            batch = [self._pending.popleft() for _ in range(size)]
            self._in_flight += 1
            free -= 1
            self._pool.apply_async(
                run_batch,
                (batch,),
                callback=self._landed_from_pool,
                error_callback=lambda error, batch=batch: self._loop.call_soon_threadsafe(
                    self._failed, batch, error
                ),
            )

    def _landed_from_pool(self, replies: list[Reply]) -> None:
        """Runs in the pool's result thread: only hop to the loop."""
        self._loop.call_soon_threadsafe(self._landed, replies)

    def _landed(self, replies: list[Reply]) -> None:
        self._in_flight -= 1
        self._deliver(replies)
        self._dispatch()

    def _failed(self, batch: list[tuple[int, Query]], error: BaseException) -> None:
        self._in_flight -= 1
        reply = error_reply(f"the worker failed: {type(error).__name__}: {error}")
        self._deliver([(job_id, "error", reply) for job_id, _ in batch])
        self._dispatch()
