"""Start the process pool whose workers attach to the published data sets."""

from __future__ import annotations

from multiprocessing.pool import Pool
from typing import Any

from compute.worker import init_worker
from store.cells import Catalog
from store.manager import process_context
from store.shm import Layout


def start_pool(workers: int, ledger: Any, published: dict[str, tuple[Catalog, Layout]]) -> Pool:
    """Blocking (it starts processes): call from a thread."""
    return process_context().Pool(workers, init_worker, (ledger, published))
