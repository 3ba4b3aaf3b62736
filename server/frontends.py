"""`--frontends N`: N aiohttp processes on one host and port (SO_REUSEPORT), one node.

One event loop is one core: about 0.8 ms of server CPU per job caps a single front-end near
1,300 jobs/s whatever the machine has. Here the parent process starts N front-ends, each a whole
server (its data in shared memory, its own pool of `--workers / N` workers, at least one) that binds
the same port with SO_REUSEPORT, so the kernel spreads connections over them. Without --store they
share the embedded store: one ledger in a manager process the parent owns (store/sharedledger.py);
with --store every front-end talks to Redis itself.

Each front-end has its own pool rather than one pool for all: a shared pool would need a hop from
every front-end to the pool's owner, the very per-job cost the extra front-ends are there to spread.

The parent forwards SIGTERM and SIGINT (as one SIGTERM) to every front-end, waits for them to drain,
then stops the ledger and exits 0. A front-end killed by a signal is started again under the same
name and runs its earlier life's unfinished jobs (server/shared.py); one that exits with an error
(a bad data file) stops the node. A front-end dies with the node however the node dies, like every
other child of a server (store/lifeline.py); it then handles SIGTERM and SIGINT itself (it drains).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web

from server.app import create_app
from server.config import Config
from server.eventloop import new_event_loop
from server.shared import Frontend
from server.stopping import drain_on_signals
from store.csvfile import DataFileError
from store.jobstore import StoreUnavailable
from store.lifeline import as_child_of
from store.manager import LedgerHost, process_context
from store.shm import name_semaphores_after_this_process

log = logging.getLogger("lestats.frontends")


START_TIMEOUT_S = 600.0
WATCH_S = 0.1  # how often the parent looks at its front-ends and the shared ledger


def started_together(frontend: Frontend) -> Callable[[web.Application], Awaitable[None]]:
    """Each front-end opens the port only once all have loaded their data, so the node is ready
    (answers on its port) only when every front-end is."""

    async def wait_for_the_others(app: web.Application) -> None:
        if frontend.started is None:  # started again after a death: the others serve already
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            await asyncio.to_thread(frontend.started.wait, START_TIMEOUT_S)

    return wait_for_the_others


def run_frontend(config: Config, frontend: Frontend, node_pid: int) -> None:
    """A front-end process's main."""
    as_child_of(node_pid)  # its own SIGTERM and SIGINT handlers come with the loop (server/stopping.py)
    app = create_app(config, frontend)
    app.on_startup.extend([drain_on_signals, started_together(frontend)])
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            access_log=None,
            handle_signals=False,
            reuse_port=True,
            loop=new_event_loop(config.loop),
            print=partial(print, flush=True) if frontend.index == 0 else None,
        )
    except DataFileError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        sys.exit(2)


class Node:
    """The parent: the shared ledger (without --store) and the front-end processes."""

    def __init__(self, config: Config) -> None:
        """A front-end killed by a signal is started again; one that exits with an error (a bad
        data file, a bug) stops the node with that status instead of looping."""
        name_semaphores_after_this_process()  # so that what this process leaves is told apart
        self._context = process_context()
        self._config = config
        self._child_config = replace(config, workers=max(1, config.workers // config.frontends))
        # A flag in shared memory, not a multiprocessing.Event: every query reads it, and an
        # Event's is_set() takes a cross-process lock the front-ends contended for (futex calls).
        self._stop_all = self._context.RawValue(ctypes.c_bool, False)
        self._started = self._context.Barrier(config.frontends)
        self._host: LedgerHost | None = None
        self._children: dict[int, BaseProcess] = {}
        self._stopping = False

    def _start(self, index: int, first: bool = False) -> None:
        started = self._started if first else None
        host = self._host
        address = host.address if host is not None else None
        frontend = Frontend(index, self._config.frontends, address, self._stop_all, started)
        process: BaseProcess = self._context.Process(  # type: ignore[attr-defined]  # every concrete context has it
            target=run_frontend, args=(self._child_config, frontend, os.getpid()), name=f"lestats-frontend-{index}"
        )
        process.start()
        self._children[index] = process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        for process in self._children.values():
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: the front-end drains

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        config = self._config
        if config.store is None:
            retention = (config.keep_results, config.keep_mb * 2**20, config.results_ttl_s)
            self._host = LedgerHost(str(config.state_dir), config.fsync, shared=retention)
            config.state_dir.mkdir(parents=True, exist_ok=True)
            self._host.start()
        for index in range(config.frontends):
            self._start(index, first=True)
        status = 0
        try:
            while self._children:
                wait([process.sentinel for process in self._children.values()], timeout=WATCH_S)
                self._watch_ledger()
                for index, process in list(self._children.items()):
                    if process.is_alive():
                        continue
                    process.join()
                    del self._children[index]
                    if self._stopping or process.exitcode == 0:
                        continue
                    if process.exitcode is not None and process.exitcode > 0:  # a bad data file, a bug
                        print(f"front-end {index} exited with {process.exitcode}", file=sys.stderr)
                        status = status or process.exitcode
                        self._stop(signal.SIGTERM, None)
                        continue
                    log.error("front-end %d was killed (%s); starting it again", index, process.exitcode)
                    self._started.abort()  # the others must not wait for it to start with them
                    self._start(index)
        finally:
            if self._host is not None:
                try:
                    if self._host.ledger is None:  # its last restart failed
                        raise StoreUnavailable("the shared ledger is not running")
                    self._host.ledger.close(0)
                except OSError as error:
                    print(f"could not journal the clean stop: {error}", file=sys.stderr)
                self._host.shutdown()
        return status

    def _watch_ledger(self) -> None:
        """A dead shared manager is started again, like a single front-end's (server/supervise.py):
        it replays the journal, the front-ends reconnect to it at the same address and record their
        running jobs again (server/shared.py); meanwhile their queries get 503."""
        if self._host is None or self._host.alive():
            return
        log.error("the shared ledger's manager process (pid %s) died; restarting it", self._host.pid)
        try:
            self._host.restart()
        except Exception:  # tried again at the next look
            log.exception("could not restart the shared ledger")
            return
        log.error("the shared ledger is back (pid %s)", self._host.pid)
