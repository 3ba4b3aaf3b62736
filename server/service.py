"""What the routes share: the data sets' catalogs, the job table, the dispatcher, the pool, the ledger."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from compute.dispatch import Dispatcher
from compute.pool import QuietPool
from server.answers import Answers
from server.datasets import DatasetRegistry
from server.jobs import JobTable
from server.shared import SharedJobs
from store.cells import Catalog
from store.manager import LedgerHost


@dataclass
class Service:
    registry: DatasetRegistry
    jobs: JobTable
    answers: Answers
    dispatcher: Dispatcher
    pool: QuietPool
    ledger_host: LedgerHost
    max_queued: int
    poll_grace_s: float = 0.0
    stopping: bool = False
    unavailable: str | None = None
    shared: SharedJobs | None = None  # the store shared with other front-ends or nodes, if any
    stop_all: Any = None  # a c_bool in shared memory shared by the node's front-ends, if several
    node: str = ""
    issued_recorded: int = 0
    retired_pools: list[QuietPool] = field(default_factory=list)  # replaced, still being disposed of
    pools_replaced: int = 0
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    @property
    def draining(self) -> bool:
        """Not taking queries: this front-end, or any front-end of the node, was told to stop."""
        return self.stopping or (self.stop_all is not None and self.stop_all.value)

    @draining.setter
    def draining(self, value: bool) -> None:
        self.stopping = value
        if value and self.stop_all is not None:
            self.stop_all.value = True

    @property
    def unreachable(self) -> str | None:
        """Why queries cannot be taken now (the ledger restarting, the store unreachable), or None."""
        return self.unavailable or (self.shared.unreachable if self.shared else None)

    @property
    def ledger(self) -> Any:
        return self.ledger_host.ledger

    @property
    def catalogs(self) -> dict[str, Catalog]:
        return self.registry.catalogs

    def worker_pids(self) -> list[int]:
        """The pool's processes. Pool keeps them in `_pool` (no public accessor) and its own
        thread swaps a dead one for a new one within milliseconds; `list()` copies atomically."""
        return sorted(pid for process in list(self.pool._pool) if (pid := process.pid) is not None)

    async def health(self) -> dict[str, Any]:
        try:
            ledger = await asyncio.to_thread(self.ledger.health)
        except Exception as error:  # the manager is down: say so, do not fail the health check
            ledger = {"write_error": f"the job ledger is unreachable: {type(error).__name__}: {error}"}
        ledger["pid"] = self.ledger_host.pid
        ledger["restarts"] = self.ledger_host.restarts
        problems = [reason for reason in (self.unreachable, ledger["write_error"]) if reason]
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "node": self.node,
            "frontend": os.getpid(),
            "store": self.shared.store.description if self.shared else "embedded",
            "workers": self.worker_pids(),
            "draining": self.draining,
            "jobs": {
                "running": len(self.jobs.running),
                "queued_for_pool": self.dispatcher.queued,
                "batches_in_flight": self.dispatcher.in_flight,
                "parked_until_ledger_returns": self.dispatcher.parked,
                "batches_lost_to_dead_workers": self.dispatcher.batches_lost,
                "pools_replaced": self.pools_replaced,
                "next_id": self.jobs.next_id,
                "issued_recorded_up_to": self.issued_recorded,
                "kept_results": len(self.jobs.replies),
                "kept_bytes": self.jobs.reply_bytes,
                "expired_below": self.jobs.expired_below,
            },
            "ledger": ledger,
            "cache": self.answers.cache.stats(),
            "datasets": {
                name: {
                    "rows": dataset.catalog.rows,
                    "cells": len(dataset.arrays["count"]),
                    "shared_bytes": dataset.shared_bytes,
                }
                for name, dataset in self.registry.datasets.items()
            },
            "uptime_s": round(asyncio.get_running_loop().time() - self.started, 3),
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        }


SERVICE = web.AppKey("service", Service)
