"""Background duties: watch the pool's workers, and expire old results."""

from __future__ import annotations

import asyncio
import logging

from compute.stuck_locks import StuckLockWatch
from server.service import Service

log = logging.getLogger("lestats.supervise")


async def watch_workers(service: Service, interval_s: float = 0.05) -> None:
    """When a worker pid disappears, send its unfinished jobs again and free any lock it held.

    The pool itself starts a replacement; this makes sure no job waits forever for the dead.
    """
    locks = StuckLockWatch(service.pool)
    known = set(service.worker_pids())
    while True:
        await asyncio.sleep(interval_s)
        current = set(service.worker_pids())
        dead = known - current
        if dead:
            locks.worker_died()
            retried = service.dispatcher.worker_died()
            log.error("worker(s) %s died; %d unfinished jobs sent again", sorted(dead), retried)
        for name in locks.check():
            log.error("freed the pool's %s, left held by a dead worker", name)
        known = current


async def expire_results(service: Service, interval_s: float = 1.0) -> None:
    """Apply the time to live, and tell the ledger which jobs it may forget and compact away."""
    told = service.jobs.expired_below
    while True:
        await asyncio.sleep(interval_s)
        watermark = service.jobs.expire()
        if watermark > told:
            failure = await asyncio.to_thread(service.ledger.expire_below, watermark)
            if failure:
                log.error("expiring jobs below %d: %s", watermark, failure)
            told = watermark
