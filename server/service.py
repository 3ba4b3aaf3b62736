"""What the routes share: the data sets' catalogs, the job table, the dispatcher, the pool, the ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from typing import Any

from aiohttp import web

from compute.dispatch import Dispatcher
from server.jobs import JobTable
from store.cells import Catalog
from store.dataset import Dataset


@dataclass
class Service:
    catalogs: dict[str, Catalog]
    datasets: dict[str, Dataset]
    jobs: JobTable
    dispatcher: Dispatcher
    pool: Pool
    ledger: Any
    max_queued: int
    draining: bool = False
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    def worker_pids(self) -> list[int]:
        """The pool's processes. Pool keeps them in `_pool` (no public accessor) and its own
        thread swaps a dead one for a new one within milliseconds; `list()` copies atomically."""
        return sorted(process.pid for process in list(self.pool._pool))  # type: ignore[attr-defined]

    async def health(self) -> dict[str, Any]:
        ledger = await asyncio.to_thread(self.ledger.health)
        problems = [ledger["write_error"]] if ledger["write_error"] else []
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "workers": self.worker_pids(),
            "draining": self.draining,
            "jobs": {
                "running": len(self.jobs.running),
                "queued_for_pool": self.dispatcher.queued,
                "batches_in_flight": self.dispatcher.in_flight,
                "batches_lost_to_dead_workers": self.dispatcher.batches_lost,
                "next_id": self.jobs.next_id,
                "kept_results": len(self.jobs.replies),
                "expired_below": self.jobs.expired_below,
            },
            "ledger": ledger,
            "datasets": {
                name: {"rows": dataset.catalog.rows, "cells": len(dataset.arrays["sum"]), "shared_bytes": dataset.shared_bytes}
                for name, dataset in self.datasets.items()
            },
            "uptime_s": round(asyncio.get_running_loop().time() - self.started, 3),
        }


SERVICE = web.AppKey("service", Service)
