"""SIGTERM and SIGINT: drain exactly as graceful_shutdown does, with the port still open, then stop.

aiohttp's own handlers raise GracefulExit at once: the listener closes, so while accepted jobs finish
their clients cannot fetch them (get_results, jobs and num_jobs refused), as API.md forbids. Here the
first signal turns the service to draining (new queries get 503 "shutting down", everything else is
answered), and the server stops once the last accepted job is done. Later signals (the process
group's copy of the same stop, a second Ctrl-C) do not cut the drain short.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from server.service import SERVICE, Service


async def drain_on_signals(app: web.Application) -> None:
    """An on_startup hook (the service exists by then): the signals start the drain."""
    loop = asyncio.get_running_loop()
    service = app[SERVICE]
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        if not stopping:
            service.draining = True
            stopping.append(loop.create_task(_exit_when_drained(service)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


async def _exit_when_drained(service: Service) -> None:
    await service.jobs.drained()
    # Raised from a callback, as aiohttp's own signal handler does: it leaves the loop and run_app
    # runs the cleanup (service_ctx). Raised in this task, it also left the task holding an
    # exception nobody retrieved, which asyncio printed as a traceback at exit.
    asyncio.get_running_loop().call_soon(_raise_graceful_exit)


def _raise_graceful_exit() -> None:
    raise GracefulExit
