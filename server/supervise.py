"""Background duties: watch the workers and the ledger's manager process, and expire old results."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from compute.dispatch import Dispatcher
from compute.pool import QuietPool, start_pool
from compute.stuck_locks import BrokenPoolWatch
from server.service import Service

log = logging.getLogger("lestats.supervise")

LEDGER_RESTARTING = "the job ledger process stopped; it is being restarted"


async def supervise(service: Service, workers: int, interval_s: float = 0.05) -> None:
    """Every tick: a worker pid gone means its unfinished jobs go out again (the pool starts the
    replacement); a pool that can no longer move jobs is replaced; a dead manager is restarted."""
    watch = BrokenPoolWatch(service.pool)
    known = set(service.worker_pids())
    while True:
        await asyncio.sleep(interval_s)
        if not service.ledger_host.alive():
            await restart_ledger(service, workers)
        elif not service.dispatcher.closed and (broken := watch.check()):  # a closing pool's threads end
            log.error("%s; replacing the pool", broken)
            await replace_pool(service, workers)
        else:
            current = set(service.worker_pids())
            if dead := known - current:
                watch.worker_died()
                retried = service.dispatcher.worker_died()
                log.error("worker(s) %s died; %d unfinished jobs sent again", sorted(dead), retried)
            if service.dispatcher.parked and not service.unreachable:
                service.dispatcher.resend_parked()
            known = current
            continue
        watch, known = BrokenPoolWatch(service.pool), set(service.worker_pids())


async def restart_ledger(service: Service, workers: int) -> None:
    """Refuse queries (503) while a new manager replays the journal; then give the pool a new
    ledger by starting a new pool."""
    service.unavailable = LEDGER_RESTARTING
    log.error("the ledger's manager process (pid %s) died; restarting it", service.ledger_host.pid)
    await asyncio.to_thread(service.ledger_host.restart)
    await replace_pool(service, workers)
    service.unavailable = None
    log.error("the ledger is back (pid %s); jobs continue on a new pool", service.ledger_host.pid)


async def replace_pool(service: Service, workers: int) -> None:
    """Start a new pool, move every unanswered job to it, and dispose of the old one in the
    background (disposing can take seconds; meanwhile the new pool must be watched)."""
    registry = service.registry
    pool = await asyncio.to_thread(start_pool, workers, service.ledger, registry.published())
    dispatcher = Dispatcher(
        pool, workers, asyncio.get_running_loop(), service.jobs.finish, registry.describe, service.answers.learn
    )
    old_pool, old_dispatcher = service.pool, service.dispatcher
    for job_id, query in old_dispatcher.take_unfinished():
        dispatcher.submit(job_id, query)
    service.pool, service.dispatcher = pool, dispatcher
    service.answers.dispatcher = dispatcher
    service.retired_pools.append(old_pool)
    service.pools_replaced += 1
    old_dispatcher.close()
    threading.Thread(target=retire, args=(old_pool, service.retired_pools), name="dispose-pool", daemon=True).start()


def retire(pool: QuietPool, retired: list[QuietPool]) -> None:
    """Dispose of a replaced pool, then stop holding it. Its results nobody will read (its jobs
    moved to the new pool) are dropped: the dispatcher's result iterator of a batch that never came
    back stays in the pool's cache, a cycle (pool, cache, iterator, pool) that only the garbage
    collector's rare full pass would free, with the pool's semaphores and pipes."""
    dispose(pool)
    pool._cache.clear()
    retired.remove(pool)


def dispose(pool: QuietPool, graceful: bool = False) -> None:
    """Stop a pool that may be wedged: terminate() first stops it from starting new workers, but
    may then wait forever on a lock a dead worker held; once its workers are killed nobody else
    uses its queues, so the locks can be released for it. `graceful` (every job answered): close
    and join instead, so idle workers exit by themselves; those waiting on a lock a dead worker
    took with it never would, and are killed the same way."""
    workers = list(pool._pool)
    if graceful:
        pool.close()
    elif not pool._result_handler.is_alive():
        pool._cache.clear()  # else terminate() refuses: "Cannot have cache with result_hander not alive"
    stopper = threading.Thread(target=pool.join if graceful else pool.terminate, name="stop-pool", daemon=True)
    stopper.start()
    stopper.join(timeout=1.0)
    if not stopper.is_alive():
        return
    # Also the workers it started since (terminate() has stopped it from starting more): one of
    # them would take a lock released here and hold it while waiting for work. They must be dead
    # before the release: a dying waiter can take the release's one wake-up to its grave, and
    # terminate() would sleep on a free lock for ever.
    doomed = [*workers, *pool._pool]
    for worker in doomed:
        worker.kill()
    for worker in doomed:
        worker.join(timeout=1.0)
    for lock in (pool._inqueue._rlock, pool._outqueue._wlock):
        if lock._semlock._get_value() == 0:
            lock.release()
    stopper.join(timeout=5.0)
    if stopper.is_alive():
        log.error("the old pool did not stop; its threads are left behind")


async def tell_ledger(
    service: Service, name: str, interval_s: float, mark: Callable[[], int], tell: Callable[[int], Awaitable[Any]]
) -> AsyncIterator[int]:
    """Every interval, when `mark()` has grown, await `tell(mark)` (a ledger method, through its channel);
    yield each mark the ledger took. A failure is logged and told again next time; nothing is told
    while the ledger is being restarted."""
    told = mark()
    while True:
        await asyncio.sleep(interval_s)
        current = mark()
        if current <= told or service.unavailable:
            continue
        try:
            failure = await tell(current)
        except Exception as error:  # the manager is down; the supervisor restarts it
            failure = f"{type(error).__name__}: {error}"
        if failure:
            log.error("%s %d: %s", name, current, failure)
            continue
        told = current
        yield current


async def expire_results(service: Service, interval_s: float = 1.0) -> None:
    """Apply the time to live, and tell the ledger which jobs it may forget and compact away."""
    async for _ in tell_ledger(
        service,
        "expiring jobs below",
        interval_s,
        service.jobs.expire,
        partial(service.ledger_host.tell, "expire_below"),
    ):
        pass


async def record_issued(service: Service, interval_s: float = 0.02) -> None:
    """Tell the ledger how far ids have been issued, so that after a crash an id handed out
    before it is "interrupted by a restart" and an id never handed out stays invalid (404).
    Off the hot path: one small write per interval, only when ids moved."""
    service.issued_recorded = service.jobs.issued_up_to
    async for issued in tell_ledger(
        service,
        "recording issued ids up to",
        interval_s,
        lambda: service.jobs.issued_up_to,
        partial(service.ledger_host.tell, "issued"),
    ):
        service.issued_recorded = issued


def forget_retired(pools: list[QuietPool]) -> None:
    """At the final stop: make sure no worker of a replaced pool lives on, and drop the pools'
    exit-time terminate() (a replaced pool's could wait forever on a lock a dead worker held,
    hanging the exit after an otherwise clean stop)."""
    for pool in list(pools):
        for worker in list(pool._pool):
            if worker.is_alive():
                worker.kill()
        pool._terminate.cancel()
