"""The application factory: each resource is a cleanup context, started in order, released in reverse.

Start: reclaim stale shared memory, load the data into shared memory, start the ledger's manager
process, start the pool. Stop (SIGTERM, SIGINT): drain every accepted job, close the pool, journal a
clean stop, stop the manager, unlink the shared memory, stop logging. Blocking steps run in threads,
so the loop is never blocked, not even while starting.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from typing import AsyncIterator

from aiohttp import web

from compute.dispatch import Dispatcher
from compute.worker import init_worker
from server.config import Config
from server.admin import ADMIN_TOKEN
from server.jobs import JobTable, Retention
from server.logs import start_logging, stop_logging
from server.middleware import json_errors, log_calls
from server.routes import add_routes
from server.service import SERVICE, Service
from server.supervise import expire_results, watch_workers
from store.dataset import Dataset, load_dataset, publish
from store.ledger import LedgerManager
from store.shm import reclaim_stale

CONFIG = web.AppKey("config", Config)
DATASETS = web.AppKey("datasets", dict[str, Dataset])
LEDGER = web.AppKey("ledger", object)

log = logging.getLogger("lestats.app")


def process_context() -> multiprocessing.context.BaseContext:
    """forkserver: children fork from a clean single-threaded server with compute preloaded."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["compute.worker"])
    return context


def _leave_signals_to_the_server() -> None:
    """The manager outlives a Ctrl-C or a SIGTERM sent to the whole process group: the server
    stops it last, after the drain has journalled every result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def logging_ctx(app: web.Application) -> AsyncIterator[None]:
    listener = start_logging(app[CONFIG].log_path)
    yield
    stop_logging(listener)


async def data_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    reclaimed = reclaim_stale()
    if reclaimed:
        log.info("reclaimed shared memory left by a dead run: %s", ", ".join(reclaimed))
    loaded = await asyncio.to_thread(load_dataset, config.data)
    dataset = publish(loaded, "default")
    log.info("loaded %s: %d rows, %d cells, %d shared bytes", config.data, dataset.catalog.rows, len(dataset.arrays["sum"]), dataset.shared_bytes)
    app[DATASETS] = {"default": dataset}
    yield
    for dataset in app[DATASETS].values():
        dataset.close()


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    manager = LedgerManager(ctx=process_context())
    await asyncio.to_thread(manager.start, _leave_signals_to_the_server)
    ledger = await asyncio.to_thread(manager.Ledger, str(app[CONFIG].state_dir))
    app[LEDGER] = ledger
    yield
    manager.shutdown()


async def service_ctx(app: web.Application) -> AsyncIterator[None]:
    config, ledger, datasets = app[CONFIG], app[LEDGER], app[DATASETS]
    recovered = await asyncio.to_thread(ledger.recovered)
    published = {name: (dataset.catalog, dataset.layout) for name, dataset in datasets.items()}
    pool = await asyncio.to_thread(
        process_context().Pool, config.workers, init_worker, (ledger, published)
    )

    async def reserve(up_to: int) -> None:
        failure = await asyncio.to_thread(ledger.reserve, up_to)
        if failure:
            raise OSError(failure)

    jobs = JobTable(recovered, reserve, Retention(config.keep_results, config.results_ttl_s))
    dispatcher = Dispatcher(pool, config.workers, asyncio.get_running_loop(), jobs.finish)
    catalogs = {name: dataset.catalog for name, dataset in datasets.items()}
    service = Service(catalogs, datasets, jobs, dispatcher, pool, ledger, config.max_queued)
    app[SERVICE] = service
    watcher = asyncio.create_task(watch_workers(service))
    expiry = asyncio.create_task(expire_results(service))
    log.info("serving with %d workers; next job id %d", config.workers, jobs.next_id)
    yield
    service.draining = True
    log.info("draining %d jobs", len(jobs.running))
    await jobs.drained()
    dispatcher.close()
    if dispatcher.batches_lost:
        await asyncio.to_thread(pool.terminate)  # close() would wait forever for a task a dead worker took
    else:
        pool.close()
    await asyncio.to_thread(pool.join)
    watcher.cancel()
    expiry.cancel()
    await asyncio.to_thread(ledger.close, jobs.next_id)
    log.info("stopped cleanly; next job id %d", jobs.next_id)


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[log_calls, json_errors(config)], client_max_size=config.max_body)
    app[CONFIG] = config
    if config.admin_token:
        app[ADMIN_TOKEN] = config.admin_token
    app.cleanup_ctx.extend([logging_ctx, data_ctx, ledger_ctx, service_ctx])
    add_routes(app)
    return app
