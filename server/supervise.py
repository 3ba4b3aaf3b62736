"""Background duties: watch the workers and the ledger's manager process, and expire old results."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Callable

from compute.dispatch import Dispatcher
from compute.pool import start_pool
from compute.stuck_locks import StuckLockWatch
from server.service import Service

log = logging.getLogger("lestats.supervise")

LEDGER_RESTARTING = "the job ledger process stopped; it is being restarted"


async def supervise(service: Service, workers: int, interval_s: float = 0.05) -> None:
    """Every tick: a worker pid gone means its unfinished jobs go out again (the pool starts the
    replacement) and any queue lock it held is freed; a dead manager is restarted."""
    locks = StuckLockWatch(service.pool)
    known = set(service.worker_pids())
    while True:
        await asyncio.sleep(interval_s)
        if not service.ledger_host.alive():
            await restart_ledger(service, workers)
            locks, known = StuckLockWatch(service.pool), set(service.worker_pids())
            continue
        current = set(service.worker_pids())
        dead = known - current
        if dead:
            locks.worker_died()
            retried = service.dispatcher.worker_died()
            log.error("worker(s) %s died; %d unfinished jobs sent again", sorted(dead), retried)
        for name in locks.check():
            log.error("freed the pool's %s, left held by a dead worker", name)
        if service.dispatcher.parked:
            service.dispatcher.resend_parked()
        known = current


async def restart_ledger(service: Service, workers: int) -> None:
    """Refuse queries (503) while a new manager replays the journal; then give the pool a new
    ledger by starting a new pool, and move every unanswered job over to it."""
    service.unavailable = LEDGER_RESTARTING
    log.error("the ledger's manager process (pid %s) died; restarting it", service.ledger_host.pid)
    await asyncio.to_thread(service.ledger_host.restart)
    old_pool, old_dispatcher = service.pool, service.dispatcher
    registry = service.registry
    pool = await asyncio.to_thread(start_pool, workers, service.ledger, registry.published())
    dispatcher = Dispatcher(
        pool, workers, asyncio.get_running_loop(), service.jobs.finish, registry.describe, service.answers.learn
    )
    for job_id, query in old_dispatcher.take_unfinished():
        dispatcher.submit(job_id, query)
    service.pool, service.dispatcher = pool, dispatcher
    service.answers.dispatcher = dispatcher
    old_dispatcher.close()
    await asyncio.to_thread(old_pool.terminate)
    service.unavailable = None
    log.error("the ledger is back (pid %s); jobs continue on a new pool", service.ledger_host.pid)


async def tell_ledger(name: str, interval_s: float, mark: Callable[[], int], tell: Callable[[int], str | None]) -> AsyncIterator[int]:
    """Every interval, when `mark()` has grown, call `tell(mark)` in a thread (a ledger method);
    yield each mark the ledger took. A failure is logged and told again next time."""
    told = mark()
    while True:
        await asyncio.sleep(interval_s)
        current = mark()
        if current <= told:
            continue
        try:
            failure = await asyncio.to_thread(tell, current)
        except Exception as error:  # the manager is down; the supervisor restarts it
            failure = f"{type(error).__name__}: {error}"
        if failure:
            log.error("%s %d: %s", name, current, failure)
            continue
        told = current
        yield current


async def expire_results(service: Service, interval_s: float = 1.0) -> None:
    """Apply the time to live, and tell the ledger which jobs it may forget and compact away."""
    async for _ in tell_ledger("expiring jobs below", interval_s, service.jobs.expire, lambda n: service.ledger.expire_below(n)):
        pass


async def record_issued(service: Service, interval_s: float = 0.02) -> None:
    """Tell the ledger how far ids have been issued, so that after a crash an id handed out
    before it is "interrupted by a restart" and an id never handed out stays invalid (404).
    Off the hot path: one small write per interval, only when ids moved."""
    service.issued_recorded = service.jobs.issued_up_to
    async for issued in tell_ledger(
        "recording issued ids up to", interval_s, lambda: service.jobs.issued_up_to, lambda n: service.ledger.issued(n)
    ):
        service.issued_recorded = issued
