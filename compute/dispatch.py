"""Hand jobs to the process pool in batches, from the event loop, without ever waiting on it.

At most one batch per worker is in flight. Jobs that arrive while every worker is busy queue up and
leave together as the next batch, so under light load a job goes alone (lowest latency) and under
heavy load the per-job cost of a pool round trip shrinks with the batch.

All batches travel through one long-lived `imap_unordered` whose task iterator is a queue the loop
feeds. Separate `apply_async` calls would each add and remove an entry in the pool's cache, and
every time the cache ran empty the pool's worker-maintenance thread would wake, poll every worker
and build a new selector: measured here, that thread took more GIL time than the requests did.
A reader thread hands each batch's replies back to the loop with `call_soon_threadsafe`.

multiprocessing.Pool silently drops the task of a worker that dies, so the dispatcher remembers
every batch in flight. When a worker dies, each of those batches may have been the dead one's:
their unfinished jobs go out again (a job's reply is pure, so a duplicate is harmless and the first
reply wins). A job sent out more than `max_attempts` times ends with an error instead.

A batch the ledger could not save comes back UNSAVED; its jobs are parked until the supervisor has
a ledger again, then go out anew (`resend_parked`, or `take_unfinished` into a new dispatcher).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.pool import Pool

from compute.queries import Query
from compute.worker import UNSAVED, Batch, DatasetSync, Reply, error_reply, run_batch

Deliver = Callable[[list[Reply]], None]
Learn = Callable[[list[tuple[int, Query]], list[Reply]], None]
Describe = Callable[[set[str]], DatasetSync]
READER_PATIENCE_S = 1.0


class Dispatcher:
    """Batches (job id, query) pairs onto a pool and delivers the replies in the loop."""

    def __init__(
        self,
        pool: Pool,
        workers: int,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        describe: Describe,
        learn: Learn | None = None,
        max_batch: int = 256,
        max_attempts: int = 2,
    ) -> None:
        self._pool = pool
        self._workers = workers
        self._loop = loop
        self._deliver = deliver
        self._describe = describe
        self._learn = learn
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._pending: deque[tuple[int, Query]] = deque()
        self._in_flight: dict[int, list[tuple[int, Query]]] = {}
        self._parked: list[tuple[int, Query]] = []
        self._attempts: dict[int, int] = {}
        self._next_batch = 0
        self._scheduled = False
        self.closed = False
        self.batches_lost = 0
        self._stream: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._replies = pool.imap_unordered(run_batch, iter(self._stream.get, None))
        self._reader = threading.Thread(target=self._read_replies, name="pool-replies", daemon=True)
        self._reader.start()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def submit(self, job_id: int, query: Query) -> None:
        """Queue a job; it leaves with whatever else arrives in this turn of the loop."""
        self._pending.append((job_id, query))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and len(self._in_flight) < self._workers:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        free = self._workers - len(self._in_flight)
        while self._pending and free > 0:
            size = min(self._max_batch, -(-len(self._pending) // free))
            jobs = [self._pending.popleft() for _ in range(size)]
            for job_id, _ in jobs:
                self._attempts[job_id] = self._attempts.get(job_id, 0) + 1
            self._next_batch += 1
            self._in_flight[self._next_batch] = jobs
            self._stream.put((self._next_batch, jobs, self._describe({query.dataset for _, query in jobs})))
            free -= 1

    def _read_replies(self) -> None:
        """The reader thread: only hop each batch's replies over to the loop. It ends when the
        stream does, or once closed with nothing in flight: a replaced pool's stream never ends,
        and a reader waiting on it for ever would hold the old pool (its semaphores, pipes and
        threads) for ever."""
        while True:
            try:
                number, replies = self._replies.next(timeout=READER_PATIENCE_S)
            except StopIteration:
                return
            except multiprocessing.TimeoutError:
                if self.closed and not self._in_flight:
                    return
                continue
            self._loop.call_soon_threadsafe(self._landed, number, replies)

    @property
    def parked(self) -> int:
        return len(self._parked)

    def _landed(self, number: int, replies: list[Reply]) -> None:
        jobs = self._in_flight.pop(number, [])
        if replies and replies[0][1] == UNSAVED:
            self._parked.extend(jobs)
            return
        for job_id, _, _ in replies:
            self._attempts.pop(job_id, None)
        if self._learn is not None and jobs:
            self._learn(jobs, replies)
        self._deliver(replies)
        self._schedule()

    def resend_parked(self) -> None:
        self._pending.extendleft(reversed(self._parked))
        self._parked.clear()
        self._schedule()

    def take_unfinished(self) -> list[tuple[int, Query]]:
        """Every job not yet answered (queued, in flight or parked), to hand to a new dispatcher."""
        jobs = [*self._parked, *(job for batch in self._in_flight.values() for job in batch), *self._pending]
        self._parked.clear()
        self._in_flight.clear()
        self._pending.clear()
        return jobs

    def worker_died(self) -> int:
        """Send again every unfinished job that was in flight; returns how many went again."""
        retried, failed = [], []
        for jobs in self._in_flight.values():
            for job_id, query in jobs:
                attempts = self._attempts.get(job_id)
                if attempts is None:
                    continue
                if attempts >= self._max_attempts:
                    del self._attempts[job_id]
                    failed.append(job_id)
                else:
                    retried.append((job_id, query))
        self.batches_lost += len(self._in_flight)
        self._in_flight.clear()
        self._pending.extendleft(reversed(retried))
        if failed:
            reply = error_reply(f"the worker process running this job died {self._max_attempts} times")
            self._deliver([(job_id, "error", reply) for job_id in failed])
        self._schedule()
        return len(retried)

    def close(self) -> None:
        """End the stream of batches (after the drain, or once its jobs moved to a new pool)."""
        self.closed = True
        self._stream.put(None)
