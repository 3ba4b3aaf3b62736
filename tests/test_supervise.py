"""The supervisor replaces a pool whose result thread died, except the pool the server is closing.

At the stop, `pool.close()` ends the pool's threads on purpose; a supervisor tick in that window
used to see "the result thread died", start a new pool that nobody closed, and hang the exit.
"""

import asyncio
import multiprocessing
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
