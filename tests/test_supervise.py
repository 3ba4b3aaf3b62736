"""The supervisor replaces a pool whose result thread died, except the pool the server is closing.

At the stop, `pool.close()` ends the pool's threads on purpose; a supervisor tick in that window
used to see "the result thread died", start a new pool that nobody closed, and hang the exit.
"""

import asyncio
import gc
import multiprocessing
import threading
import time
import weakref
from types import SimpleNamespace

import pytest

from server import supervise


class Alive:
    def alive(self):
        return True


def closed_pool():
    """A real pool whose threads have ended, as after `close()` and `join()`."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    pool.close()
    pool.join()
    return pool


@pytest.mark.parametrize(("dispatcher_closed", "replaced"), [(True, False), (False, True)])
async def test_a_dead_result_thread_replaces_the_pool_unless_it_is_being_closed(
    monkeypatch, dispatcher_closed, replaced
):
    pool = await asyncio.to_thread(closed_pool)
    calls = []

    async def replace_pool(service, workers):
        calls.append(workers)

    monkeypatch.setattr(supervise, "replace_pool", replace_pool)
    service = SimpleNamespace(
        pool=pool,
        ledger_host=Alive(),
        dispatcher=SimpleNamespace(closed=dispatcher_closed, parked=0),
        worker_pids=list,
    )
    duty = asyncio.create_task(supervise.supervise(service, 1, interval_s=0.001))
    for _ in range(200):  # bounded: a few dozen ticks
        await asyncio.sleep(0.001)
        if calls:
            break
    duty.cancel()
    assert bool(calls) == replaced


def test_a_replaced_pool_whose_result_thread_died_stops_and_is_freed_at_once(monkeypatch):
    """A torn result kills the pool's result thread with a batch unanswered. Retiring that pool
    stops its threads and workers (CPython's terminate() refuses a dead result thread with results
    pending) and leaves nothing that keeps it: its result iterator in its cache held it in a cycle,
    with its semaphores and pipes, until a full garbage collection."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the result thread's death
    pool = multiprocessing.get_context("spawn").Pool(1)
    gc.disable()
    try:
        unanswered = pool.imap_unordered(time.sleep, [60])
        pool._outqueue._writer.send_bytes(b"a torn result")
        pool._result_handler.join(timeout=30)
        assert not pool._result_handler.is_alive()
        workers, retired = list(pool._pool), [pool]
        supervise.retire(pool, retired)
        assert retired == []
        assert not pool._worker_handler.is_alive() and not pool._task_handler.is_alive()
        assert all(worker.exitcode is not None for worker in workers)
        freed = weakref.ref(pool)
        del pool, unanswered, retired
        assert freed() is None, "something still holds the retired pool"
    finally:
        gc.enable()
