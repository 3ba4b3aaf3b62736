"""The application factory: each resource is a cleanup context, started in order, released in reverse.

Start: reclaim stale shared memory, load the data into shared memory, start the ledger's manager
process, start the pool. Stop (SIGTERM, SIGINT): drain every accepted job, close the pool, journal a
clean stop, stop the manager, unlink the shared memory, stop logging. Blocking steps run in threads,
so the loop is never blocked, not even while starting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from compute.dispatch import Dispatcher
from compute.pool import start_pool
from server.admin import ADMIN_HOST, ADMIN_TOKEN
from server.answers import AnswerCache, Answers
from server.config import Config
from server.dataset_routes import add_dataset_routes
from server.datasets import DatasetRegistry
from server.fastpath import HotRoutes, fast_handler_args
from server.fastpath import install as install_fast_handler
from server.guards import refuse_encoded_bodies
from server.jobs import JobTable, Retention
from server.logs import CallLog, start_logging, stop_logging
from server.middleware import json_errors, log_calls
from server.protocol import loop_errors, raise_file_limit
from server.routes import add_routes
from server.service import SERVICE, Service
from server.shared import Frontend, SharedJobs
from server.shared_datasets import SharedDatasetRegistry
from server.stores import open_store
from server.supervise import dispose, expire_results, forget_retired, record_issued, supervise
from store.jobstore import JobStore, StoreUnavailable
from store.ledger import Recovered
from store.manager import LedgerHost
from store.shm import name_semaphores_after_this_process, reclaim_stale

CONFIG = web.AppKey("config", Config)
CALL_LOG = web.AppKey("call_log", CallLog)
DATASETS = web.AppKey("datasets", DatasetRegistry)
LEDGER = web.AppKey("ledger", LedgerHost)
FRONTEND = web.AppKey("frontend", Frontend)
STORE = web.AppKey("store", JobStore)

log = logging.getLogger("lestats.app")


async def logging_ctx(app: web.Application) -> AsyncIterator[None]:
    listener = start_logging(app[CONFIG].log_path, app[CALL_LOG])
    yield
    stop_logging(listener)


async def connections_ctx(app: web.Application) -> AsyncIterator[None]:
    """Before listening: as many open files as the hard limit allows, and the loop's own errors
    (accept() failing for want of descriptors) burst-logged to the service log."""
    soft, hard = raise_file_limit()
    log.info("open-file limit %d (hard %d)", soft, hard)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(loop_errors)
    yield
    loop.set_exception_handler(previous)


async def data_ctx(app: web.Application) -> AsyncIterator[None]:
    """The start-up data set and every kept upload, each in its own shared segment."""
    config = app[CONFIG]
    name_semaphores_after_this_process()
    reclaimed = reclaim_stale()
    if reclaimed:
        log.info("reclaimed shared memory left by a dead run: %s", ", ".join(reclaimed))
    registry = (SharedDatasetRegistry if config.shared else DatasetRegistry)(config.state_dir)
    app[DATASETS] = registry
    try:
        dataset = await registry.load_default(config.data)
        log.info(
            "loaded %s: %d rows, %d cells, %d shared bytes",
            config.data,
            dataset.catalog.rows,
            len(dataset.arrays["count"]),
            dataset.shared_bytes,
        )
        restored = await registry.restore()
        if restored:
            log.info("restored uploaded data sets: %s", ", ".join(restored))
        yield
    finally:
        registry.close()


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    host, store = open_store(app[CONFIG], app[FRONTEND])
    await asyncio.to_thread(host.start)
    app[LEDGER] = host
    if store is not None:
        app[STORE] = store
        registry = app[DATASETS]
        assert isinstance(registry, SharedDatasetRegistry)
        registry.store = store
    yield
    if store is not None:
        await store.close()
    await asyncio.to_thread(host.shutdown)


async def service_ctx(app: web.Application) -> AsyncIterator[None]:
    config, host, registry = app[CONFIG], app[LEDGER], app[DATASETS]
    store = app.get(STORE)
    # With a shared store, this process only caches its own jobs; the store has all of them.
    recovered = Recovered() if store is not None else await asyncio.to_thread(host.ledger.recovered)
    if recovered.torn_bytes:
        log.error("the journal ended in a torn line (a crash mid-write): cut %d bytes", recovered.torn_bytes)
    if isinstance(registry, SharedDatasetRegistry):
        try:
            await registry.sync()
        except StoreUnavailable as error:
            log.error("cannot load the uploaded data sets yet: %s", error)
    pool = await asyncio.to_thread(start_pool, config.workers, host.ledger, registry.published())

    async def reserve(up_to: int) -> None:
        failure = await asyncio.to_thread(host.ledger.reserve, up_to)
        if failure:
            raise OSError(failure)

    jobs = JobTable(recovered, reserve, Retention(config.keep_results, config.keep_mb * 2**20, config.results_ttl_s))
    answers = Answers(
        AnswerCache(config.cache_entries, config.cache_mb * 2**20),
        host.finish,
        jobs.finish,
        config.cache_gather_ms / 1000,
    )
    dispatcher = Dispatcher(
        pool, config.workers, asyncio.get_running_loop(), jobs.finish, registry.describe, answers.learn
    )
    answers.dispatcher = dispatcher
    service = Service(registry, jobs, answers, dispatcher, pool, host, config.max_queued, config.poll_grace_ms / 1000)
    service.node, service.stop_all = config.node_name, app[FRONTEND].stop_all
    app[SERVICE] = service
    # Only the service may hold them: this generator lives until the stop, and a local here kept
    # a replaced pool's semaphores and pipes until then.
    del pool, dispatcher
    if store is None:
        keeping = [expire_results(service), record_issued(service)]
    else:
        service.shared = SharedJobs(store, config.node_name, app[FRONTEND], jobs)
        assert isinstance(registry, SharedDatasetRegistry)
        registry.forget_replies = answers.cache.forget_dataset
        keeping = [
            service.shared.keep_alive(lambda: registry.catalogs, answers.submit, lambda: service.ledger, registry.sync)
        ]
    duties = [asyncio.create_task(duty) for duty in (supervise(service, config.workers), *keeping)]
    log.info("serving with %d workers; next job id %d", config.workers, jobs.next_id)
    yield
    service.draining = True
    log.info("draining %d jobs", len(jobs.running))
    await jobs.drained()
    # The duties stop before the pool does: the supervisor would take the pool's own stop (its
    # result thread ending) for a broken pool, log an error and start a new one.
    for duty in duties:
        duty.cancel()
    await asyncio.gather(*duties, return_exceptions=True)
    service.dispatcher.close()
    # Not graceful if a dead worker took a task: close() would wait for its result for ever.
    await asyncio.to_thread(dispose, service.pool, not service.dispatcher.batches_lost)
    forget_retired(service.retired_pools)
    try:
        failure = await asyncio.to_thread(host.ledger.close, jobs.next_id)
    except Exception as error:
        failure = f"the job ledger is unreachable: {error}"
    if failure:
        log.error("could not journal the clean stop (the next start will skip ahead): %s", failure)
    log.info("stopped; next job id %d", jobs.next_id)


def create_app(config: Config, frontend: Frontend | None = None) -> web.Application:
    """`frontend`: which of the node's front-ends this is (server/frontends.py), when there are several."""
    calls = CallLog()
    install_fast_handler()
    handler_args = fast_handler_args(config, None)
    app = web.Application(
        middlewares=[log_calls(config, calls), json_errors(config), refuse_encoded_bodies()],
        client_max_size=config.max_body,
        handler_args=handler_args,
    )
    if config.http_fast_path:  # the app keeps this dict, and passes it to each connection's handler
        handler_args["hot"] = HotRoutes(app, config, calls)
    app[CONFIG] = config
    app[ADMIN_HOST] = config.host
    app[FRONTEND] = frontend or Frontend()
    app[CALL_LOG] = calls
    if config.admin_token:
        app[ADMIN_TOKEN] = config.admin_token
    app.cleanup_ctx.extend([logging_ctx, connections_ctx, data_ctx, ledger_ctx, service_ctx])
    add_routes(app)
    add_dataset_routes(app, config.max_upload)
    return app
