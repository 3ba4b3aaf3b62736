"""A front-end's side of a job store shared with other front-ends or nodes (store/jobstore.py).

Each accepted job is recorded in the store before its id is returned, so any process can answer
for it; the jobs that arrive in one turn of the event loop are recorded in one call. The job stays
in this process's JobTable too, so get_results on this front-end answers from memory as before; a
job this process does not hold is read from the store. A duty keeps this front-end's heartbeat and
takes over the running jobs of front-ends or nodes that died (a query is pure: running it twice is
harmless, the first reply wins). A store that cannot be reached makes queries 503 at once until the
heartbeat gets through again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from compute.worker import Reply, error_reply
from server.jobs import JobTable
from server.validation import BadRequest, parse_query
from store.cells import Catalog
from store.channel import AsyncChannel
from store.jobstore import RUNNING, Accepted, JobStore, Ledger, StoreUnavailable
from store.manager import LedgerHost
from store.uploads import DamagedIndex

log = logging.getLogger("lestats.shared")

HEARTBEAT_S = 0.25
FIRST_RECHECK_S, LAST_RECHECK_S = 0.002, 0.1
RESAVE_S = 10.0  # more than Redis's appendfsync everysec can lose
CLAIM_EVERY = 4  # heartbeats between looks for dead owners' jobs


class Opened(NamedTuple):
    """A job just accepted: its id, and a reply the store had for the same query (or None)."""

    job_id: int
    known: bytes | None


@dataclass(frozen=True)
class Frontend:
    """Which front-end of a node this process is, and what the node's front-ends share."""

    index: int = 0
    count: int = 1
    ledger_address: str | None = None  # the embedded shared ledger's channel (several front-ends, no --store)
    stop_all: Any = None  # a c_bool in shared memory: true once any front-end of the node drains
    started: Any = None  # a multiprocessing.Barrier: the front-ends open the port together


class AttachedLedgerHost(LedgerHost):
    """A ledger this process uses but does not own (the node's parent process or Redis does):
    nothing to start, watch or restart here. `address`: the node's shared ledger's channel, and
    `seen` the store's channel to it, which tells its pid and restarts; or `journal`, what saves
    the event loop's replies (Redis's asyncio client: `ledger`, Redis's blocking one, is for
    workers and threads)."""

    def __init__(
        self,
        ledger: Any,
        address: str = "",
        seen: AsyncChannel | None = None,
        journal: Callable[[list[Reply]], Awaitable[str | None]] | None = None,
    ) -> None:
        super().__init__("")
        self.address = address
        self.ledger = ledger
        self._seen = seen
        self._journal_replies = journal

    def start(self, server_start: bool = True) -> None:
        return None

    async def finish(self, replies: list[Reply]) -> str | None:
        if self._journal_replies is not None:
            return await self._journal_replies(replies)
        return await super().finish(replies)

    @property
    def pid(self) -> int | None:
        """The manager's pid as its channel last said (it changes when the parent restarts it)."""
        return self._seen.manager_pid if self._seen else None

    @property
    def restarts(self) -> int:
        return self._seen.restarts if self._seen else 0

    def alive(self) -> bool:
        return True

    def restart(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


def owner_name(node: str, index: int) -> str:
    return f"{node}#{index}"


class SharedJobs:
    """Ids, records and reads of jobs through the store; local jobs stay in the JobTable."""

    def __init__(self, store: JobStore, node: str, frontend: Frontend, jobs: JobTable) -> None:
        self.store = store
        self.owner = owner_name(node, frontend.index)
        self.node_owners = [owner_name(node, index) for index in range(frontend.count)]
        self._jobs = jobs
        self._pending: list[tuple[str, bytes, bool, asyncio.Future[Opened]]] = []
        self._recording: asyncio.Task[None] | None = None
        self.unreachable: str | None = None
        self.taken_over = 0
        self._resave = False
        self._restore = False
        self._look_for_own = True  # at start: jobs an earlier life of this front-end left running
        self._queries: dict[int, tuple[str, bytes]] = {}  # of running jobs: to record them again

    async def open(self, kind: str, body: bytes, ask: bool = False) -> Opened:
        """A new job id, recorded running in the store with its query, and (`ask`) a reply the
        store already has for the same query, if any; raises StoreUnavailable."""
        if self.unreachable:
            raise StoreUnavailable(self.unreachable)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Opened] = loop.create_future()
        self._pending.append((kind, body, ask, future))
        if self._recording is None:
            self._recording = loop.create_task(self._record())
        opened = await future
        self._jobs.adopt(opened.job_id)
        self._queries[opened.job_id] = (kind, body)
        return opened

    async def _record(self) -> None:
        """Record every waiting job, one store call per batch, until none wait."""
        await asyncio.sleep(0)  # let the rest of this loop turn's requests join the batch
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                jobs = [(kind, body) for kind, body, _, _ in batch]
                ask = [offset for offset, (_, _, asked, _) in enumerate(batch) if asked]
                try:
                    first, known = await self.store.accept(self.owner, jobs, ask)
                except StoreUnavailable as error:
                    self.lost(str(error))
                    self._look_for_own = True  # the store may have recorded them before failing
                    for _, _, _, future in batch:
                        if not future.done():
                            future.set_exception(StoreUnavailable(str(error)))
                    continue
                for offset, (_, _, _, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(Opened(first + offset, known.get(offset)))
        finally:
            self._recording = None

    def lost(self, reason: str) -> None:
        if self.unreachable is None:
            log.error("the job store is unreachable: %s", reason)
        self.unreachable = f"the job store is unreachable: {reason}"

    def holds(self, job_id: int) -> bool:
        return job_id in self._jobs.replies or job_id in self._jobs.running

    async def lookup(self, job_id: int, wait_s: float = 0.0) -> tuple[int, bytes]:
        """get_results for any job: from memory when this process holds it, else from the store.
        A job running elsewhere is looked at again, at growing intervals, for up to `wait_s`
        (the poll grace, or ?wait=): a client polling in a loop costs a few store reads, not one
        per round trip."""
        if self.holds(job_id):
            return self._jobs.lookup(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        pause = FIRST_RECHECK_S
        while True:
            status, reply = await self.store.lookup(job_id)
            remaining = deadline - loop.time()
            if reply != RUNNING or remaining <= 0:
                return status, reply
            await asyncio.sleep(min(pause, remaining))
            pause = min(2 * pause, LAST_RECHECK_S)

    async def node_running(self) -> int:
        """Jobs still running on this node (every front-end of it)."""
        return await self.store.running(self.node_owners)

    async def keep_alive(
        self,
        catalogs: Callable[[], dict[str, Catalog]],
        submit: Callable[[int, Any], None],
        ledger: Callable[[], Ledger],
        sync_datasets: Callable[[], Awaitable[None]],
    ) -> None:
        """The duty: heartbeat; take over dead owners' jobs and load data sets uploaded elsewhere;
        mark the store reachable again."""
        beats = 0
        while True:
            try:
                if beats % CLAIM_EVERY == 0:
                    try:
                        await sync_datasets()
                    except DamagedIndex as error:  # a person must mend it; taking over goes on
                        log.error("cannot read the uploads' list: %s", error)
                    including_own, self._look_for_own = self._look_for_own, False
                    try:
                        await self.take_over(catalogs(), submit, ledger(), including_own)
                    except BaseException:
                        # A claim whose reply was lost may have moved jobs to this owner in the
                        # store: the next look takes this owner's jobs it does not hold too.
                        self._look_for_own = True
                        raise
                else:
                    await self.store.heartbeat(self.owner)
                if self.store.restarted():
                    self._resave = self._restore = True
                if self._restore:
                    await self.store.restore(self.owner, self.running_queries())
                    self._restore = False
                if self._resave:
                    await self.save_again(ledger())
                    self._resave = False
                if self.unreachable:
                    log.error("the job store is reachable again")
                    self.unreachable = None
            except OSError as error:  # StoreUnavailable, or a ledger write that could not reach it
                self.lost(str(error))
            except Exception:  # a bug must not end the heartbeat: that would strand this node's jobs
                log.exception("in the job store's duty")
            self._jobs.expire()
            self._forget_finished()
            beats += 1
            await asyncio.sleep(HEARTBEAT_S)

    def running_queries(self) -> list[Accepted]:
        """This front-end's running jobs with their queries."""
        self._forget_finished()
        return [Accepted(job_id, *query) for job_id, query in self._queries.items()]

    def _forget_finished(self) -> None:
        """Drop the queries of jobs that ended: they are kept only to record running jobs again."""
        self._queries = {job_id: query for job_id, query in self._queries.items() if job_id in self._jobs.running}

    async def save_again(self, ledger: Ledger) -> None:
        """The store restarted and may have lost its last writes: save recent replies again."""
        replies = self._jobs.finished_since(RESAVE_S)
        if replies:
            await asyncio.to_thread(ledger.finish, replies)
        log.error("the job store restarted; saved the %d replies of the last %g s again", len(replies), RESAVE_S)

    async def take_over(
        self, catalogs: dict[str, Catalog], submit: Callable[[int, Any], None], ledger: Ledger, including_own: bool
    ) -> None:
        """Run the claimed jobs here; one whose query no longer validates ends with the reason."""
        orphans = await self.store.claim_orphans(self.owner, including_own)
        refused = []
        for job_id, kind, body in orphans:
            if self.holds(job_id):
                continue
            try:
                query = parse_query(kind, body, catalogs)
            except BadRequest as error:
                refused.append((job_id, "error", error_reply(f"cannot be run again here: {error}")))
                continue
            self._jobs.adopt(job_id)
            self._queries[job_id] = (kind, body)
            submit(job_id, query)
        if refused:
            await asyncio.to_thread(ledger.finish, refused)
        if orphans:
            self.taken_over += len(orphans)
            log.error("took over %d running jobs of stopped front-ends or nodes", len(orphans))
