"""Cached answers are journalled in as few ledger calls as the load allows, and never out of turn.

A fake ledger whose `finish` blocks until the test lets it go shows which hits travel together;
nothing here depends on timing (the gather pause is long, and only the order of events matters).
"""

import asyncio
import functools
import threading

from compute.queries import Query
from server.answers import AnswerCache, Answers


class HeldLedger:
    """A ledger whose calls wait for `release`, recording the job ids of each call."""

    def __init__(self):
        self.calls = []
        self.release = threading.Event()

    def finish(self, replies):
        self.release.wait(timeout=30)
        self.calls.append([job_id for job_id, _, _ in replies])


class NoPool:
    def submit(self, job_id, query):
        raise AssertionError(f"job {job_id} is a cache hit and must not go to the pool")


def answers_with_hits(ledger, gather_s, delivered):
    cache = AnswerCache(max_entries=16, max_bytes=2**20)
    cache.put(Query("states_mean", 0), b'{"status":"done","data":{}}')
    answers = Answers(cache, functools.partial(asyncio.to_thread, ledger.finish), delivered.append, gather_s)
    answers.dispatcher = NoPool()
    return answers


async def journal_in_turns(gather_s):
    """Hit 1 starts a call; 2 and 3 arrive during it; 4 right after the first call returns."""
    ledger, delivered = HeldLedger(), []
    answers = answers_with_hits(ledger, gather_s, delivered)
    answers.submit(1, Query("states_mean", 0))
    await asyncio.sleep(0)  # the journal task starts its call
    answers.submit(2, Query("states_mean", 0))
    answers.submit(3, Query("states_mean", 0))
    ledger.release.set()
    for _ in range(1000):  # bounded: until the first call's replies are delivered
        if delivered:
            break
        await asyncio.sleep(0.01)
    answers.submit(4, Query("states_mean", 0))
    for _ in range(1000):
        if sum(len(replies) for replies in delivered) == 4:
            break
        await asyncio.sleep(0.01)
    return ledger.calls, [[job_id for job_id, _, _ in replies] for replies in delivered]


async def test_under_load_the_next_call_waits_to_gather_more_hits():
    calls, delivered = await journal_in_turns(gather_s=0.5)
    assert calls == [[1], [2, 3, 4]]
    assert delivered == calls


async def test_without_gathering_each_call_takes_only_what_is_waiting():
    calls, delivered = await journal_in_turns(gather_s=0.0)
    assert calls == [[1], [2, 3], [4]]
    assert delivered == calls


async def test_a_lone_hit_is_journalled_at_once_even_with_gathering():
    ledger, delivered = HeldLedger(), []
    ledger.release.set()
    answers = answers_with_hits(ledger, 30.0, delivered)
    answers.submit(1, Query("states_mean", 0))
    for _ in range(1000):
        if delivered:
            break
        await asyncio.sleep(0.01)
    assert ledger.calls == [[1]]
