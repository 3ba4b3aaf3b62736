"""Start the process pool whose workers attach to the published data sets."""

from __future__ import annotations

import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from multiprocessing.util import Finalize
from typing import Any, Protocol

from compute.worker import Published, init_worker
from store.manager import process_context


class PoolQueue(Protocol):
    """The private parts of a Pool's task or result queue (multiprocessing.queues.SimpleQueue)
    that the supervisor reads: its pipe's reading end and its two locks (multiprocessing Locks,
    whose `_semlock._get_value()` is 0 while one is held)."""

    _reader: Connection
    _rlock: Any
    _wlock: Any


class QuietPool(Pool):
    """A Pool whose maintenance thread wakes only when it has something to maintain.

    CPython's Pool has that thread wait on the result pipe as well as on the workers' sentinels
    and its own notifier, so it wakes, polls every worker and builds a new selector for every
    result a worker sends: measured here, more GIL time than the HTTP handling of the same jobs.
    It does not need the result pipe: a worker's exit wakes it through its sentinel, and `close()`,
    `terminate()` and the cache running dry through the notifier.

    The supervisor also reads what Pool keeps private, since nothing public tells a dead worker, a
    lock a dead worker took with it, or a dead handler thread (compute/stuck_locks.py,
    server/supervise.py). Those attributes of CPython's multiprocessing/pool.py are declared here,
    once, with their types (typeshed declares none), and used typed everywhere else.
    """

    _pool: list[BaseProcess]
    _inqueue: PoolQueue
    _outqueue: PoolQueue
    _change_notifier: PoolQueue
    _result_handler: threading.Thread
    _worker_handler: threading.Thread
    _terminate: Finalize
    _cache: dict[int, Any]

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        return Worker(*args, **kwds)


class Worker(ForkServerProcess):
    """Workers ignore SIGTERM (it is the server's, `store.lifeline`), so `terminate()` on a pool,
    which sends it to each worker and then waits for them, kills them instead. (A subclass, not
    a method set on each process: that would be a reference cycle, and a dead worker's pipes would
    stay open until the garbage collector's rare full pass.)"""

    def terminate(self) -> None:
        self.kill()


def start_pool(workers: int, ledger: Any, published: Published) -> QuietPool:
    """Blocking (it starts processes): call from a thread."""
    return QuietPool(workers, init_worker, (ledger, published, os.getpid()), context=process_context())
