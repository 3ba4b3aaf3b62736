"""Start the process pool whose workers attach to the published data sets."""

from __future__ import annotations

import os
from multiprocessing.context import ForkServerProcess
from multiprocessing.pool import Pool
from typing import Any

from compute.worker import init_worker
from store.cells import Catalog
from store.manager import process_context
from store.shm import Layout


class QuietPool(Pool):
    """A Pool whose maintenance thread wakes only when it has something to maintain.

    CPython's Pool has that thread wait on the result pipe as well as on the workers' sentinels
    and its own notifier, so it wakes, polls every worker and builds a new selector for every
    result a worker sends: measured here, more GIL time than the HTTP handling of the same jobs.
    It does not need the result pipe: a worker's exit wakes it through its sentinel, and `close()`,
    `terminate()` and the cache running dry through the notifier.
    """

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]  # type: ignore[attr-defined]

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


def start_pool(workers: int, ledger: Any, published: dict[str, tuple[Catalog, Layout]]) -> Pool:
    """Blocking (it starts processes): call from a thread."""
    return QuietPool(workers, init_worker, (ledger, published, os.getpid()), context=process_context())
