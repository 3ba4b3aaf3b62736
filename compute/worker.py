"""What runs inside a pool worker: attach to the shared data once, then answer batches of jobs.

A batch is one pool task: its jobs are answered, journalled by the ledger (one round trip for the
batch), and returned as finished reply bytes, so the server only stores them and writes them out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from compute.queries import Query, answer
from store.cells import Catalog
from store.dataset import Dataset, attach
from store.lifeline import as_child_of
from store.shm import Layout

Reply = tuple[int, str, bytes]
UNSAVED = "unsaved"
Published = dict[str, tuple[Catalog, Layout]]


class DatasetSync(NamedTuple):
    """Sent with every batch: which data sets still exist, and where to find those the batch
    uses besides the start-up one (a worker attaches to an uploaded set on first use)."""

    live: tuple[str, ...]
    layouts: Published


Batch = tuple[int, list[tuple[int, Query]], DatasetSync]

_ledger: Any = None
_datasets: dict[str, Dataset] = {}


def error_reply(reason: str) -> bytes:
    return orjson.dumps({"status": "error", "reason": reason})


def init_worker(ledger: Any, published: Published, server_pid: int) -> None:
    """Pool initializer: attach every published data set; SIGINT and SIGTERM are the server's to
    handle, and the worker ends with the server."""
    global _ledger
    as_child_of(server_pid)
    _ledger = ledger
    for name, (catalog, layout) in published.items():
        _datasets[name] = attach(catalog, layout)


def sync_datasets(sync: DatasetSync) -> None:
    """Detach from data sets that were removed; attach to new ones the batch needs."""
    for name in [name for name in _datasets if name not in sync.live]:
        _datasets.pop(name).close()
    for name, (catalog, layout) in sync.layouts.items():
        if name not in _datasets:
            _datasets[name] = attach(catalog, layout)


def reply_to(query: Query) -> tuple[str, bytes]:
    """One job's status and its whole get_results reply."""
    dataset = _datasets.get(query.dataset)
    if dataset is None:
        return "error", error_reply(f"data set {query.dataset!r} is not loaded")
    try:
        data = answer(dataset, query)
    except LookupError as error:
        return "error", error_reply(str(error))
    except Exception as error:  # a bug must end the job with its reason, not wedge the batch
        return "error", error_reply(f"internal error: {type(error).__name__}: {error}")
    return "done", orjson.dumps({"status": "done", "data": data})


def run_batch(batch: Batch) -> tuple[int, list[Reply]]:
    """Answer a numbered batch; replies reach the server only once the ledger has them on disk.

    It never raises. If the ledger refuses the write (a full disk), each job ends with that reason;
    if the ledger cannot be reached at all, the batch comes back UNSAVED, to be sent again once
    the server has restarted the ledger.
    """
    number, jobs, sync = batch
    try:
        sync_datasets(sync)
    except OSError as error:
        failed = error_reply(f"cannot attach to the data set: {error}")
        return number, [(job_id, "error", failed) for job_id, _ in jobs]
    replies = [(job_id, *reply_to(query)) for job_id, query in jobs]
    try:
        failure = _ledger.finish(replies)
    except Exception as error:
        unreachable = error_reply(f"the job ledger is unreachable: {type(error).__name__}: {error}")
        return number, [(job_id, UNSAVED, unreachable) for job_id, _ in jobs]
    if failure:
        unsaved = error_reply(f"the result could not be saved: {failure}")
        return number, [(job_id, "error", unsaved) for job_id, _ in jobs]
    return number, replies
