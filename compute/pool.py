"""Start the process pool whose workers attach to the published data sets."""

from __future__ import annotations

import os
from multiprocessing.pool import Pool
from typing import Any

from compute.worker import Published, init_worker
from store.manager import process_context


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
        """Workers ignore SIGTERM (it is the server's, `store.lifeline`), so `terminate()` on a
        pool, which sends it to each worker and then waits for them, kills them instead."""
        process = ctx.Process(*args, **kwds)
        process.terminate = process.kill
        return process


def start_pool(workers: int, ledger: Any, published: Published) -> Pool:
    """Blocking (it starts processes): call from a thread."""
    return QuietPool(workers, init_worker, (ledger, published, os.getpid()), context=process_context())
