"""What runs inside a pool worker: attach to the shared data once, then answer batches of jobs.

A batch is one pool task: its jobs are answered, journalled by the ledger (one round trip for the
batch), and returned as finished reply bytes, so the server only stores them and writes them out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from compute.queries import Query, answer
from store.dataset import Dataset, attach
from store.lifeline import as_child_of
from store.shm import Layout

Reply = tuple[int, str, bytes]
UNSAVED = "unsaved"
Published = dict[str, Layout]


class DatasetSync(NamedTuple):
    """Sent with every batch: the segments of the data sets that still exist, and the layout of each
    data set the batch uses (a few hundred bytes: the catalog is read from the segment itself).

    A worker answers only from the segment the batch names: data-set ids are never reused, and a
    worker that holds another segment under that name detaches and attaches to the named one."""

    live: frozenset[str]
    layouts: Published


Batch = tuple[int, list[tuple[int, Query]], DatasetSync]

_ledger: Any = None
_datasets: dict[str, Dataset] = {}


def error_reply(reason: str) -> bytes:
    return orjson.dumps({"status": "error", "reason": reason})


def removed_reason(name: str) -> str:
    return f"the data set {name!r} was removed"


def init_worker(ledger: Any, published: Published, server_pid: int) -> None:
    """Pool initializer: SIGINT and SIGTERM are the server's to handle, and the worker ends with
    the server; then attach the published data sets (`attach_published`)."""
    global _ledger
    as_child_of(server_pid)
    _ledger = ledger
    attach_published(published)


def attach_published(published: Published) -> None:
    """Attach each data set that can still be attached, skipping the others.

    It must never raise. A pool hands the same initializer arguments to every worker it starts,
    replacements too, so `published` names the data sets of the day the pool started, some since
    removed. A worker dying in its initializer is replaced by one that dies the same way, for ever,
    and each death sends every batch in flight out again, until their jobs end as "died 2 times",
    on any data set. A data set skipped here is attached, or its jobs told why not, by the batch
    that uses it (`sync_datasets`)."""
    for name, layout in published.items():
        _hold(name, layout)


def _hold(name: str, layout: Layout) -> str | None:
    """Attach to a data set's segment; returns why it cannot be (removed meanwhile, or the system
    refused), or None."""
    try:
        _datasets[name] = attach(layout)
    except FileNotFoundError:
        return removed_reason(name)
    except OSError as error:
        return f"cannot attach to the data set {name!r}: {error}"
    return None


def sync_datasets(sync: DatasetSync) -> dict[str, str]:
    """Detach from segments no longer live; make sure each data set the batch uses is held at the
    segment it names. Returns why a data set could not be attached (it was removed meanwhile, or
    the system refused), by name: only that data set's jobs fail."""
    for name in [name for name, dataset in _datasets.items() if dataset.layout_segment not in sync.live]:
        _datasets.pop(name).close()
    failures = {}
    for name, layout in sync.layouts.items():
        held = _datasets.get(name)
        if held is not None and held.layout == layout:
            continue
        if held is not None:
            _datasets.pop(name).close()
        if (failure := _hold(name, layout)) is not None:
            failures[name] = failure
    return failures


def reply_to(query: Query, failures: dict[str, str]) -> tuple[str, bytes]:
    """One job's status and its whole get_results reply."""
    failure = failures.get(query.dataset)
    if failure is not None:
        return "error", error_reply(failure)
    dataset = _datasets.get(query.dataset)
    if dataset is None:
        return "error", error_reply(removed_reason(query.dataset))
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
    failures = sync_datasets(sync)
    replies = [(job_id, *reply_to(query, failures)) for job_id, query in jobs]
    try:
        failure = _ledger.finish(replies)
    except Exception as error:
        unreachable = error_reply(f"the job ledger is unreachable: {type(error).__name__}: {error}")
        return number, [(job_id, UNSAVED, unreachable) for job_id, _ in jobs]
    if failure:
        unsaved = error_reply(f"the result could not be saved: {failure}")
        return number, [(job_id, "error", unsaved) for job_id, _ in jobs]
    return number, replies
