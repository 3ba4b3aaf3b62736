"""The channel to the ledger's manager process (store/channel.py), and the shared ledger behind it.

In process: framing, many operations in one frame, errors raised where they are called, a
manager that is gone (a real process, SIGKILLed) or does not answer, a restarted one, and the
shared ledger's restart (store/sharedledger.py) as a front-end's EmbeddedStore sees it.
"""

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading

import orjson
import pytest
from serverproc import PROJECT_ROOT

import store.sharedledger
from store.channel import (
    AsyncChannel,
    ChannelServer,
    LedgerChannel,
    frame,
    new_address,
    read_frame,
)
from store.jobstore import RUNNING, StoreUnavailable
from store.ledger import INTERRUPTED, JOURNAL, replay
from store.sharedledger import EmbeddedStore, SharedLedger
from store.uploads import read_index

PATIENCE_S = 30  # a bound for a call that must end much sooner; never a timing assertion
RETENTION = (1000, 2**20, None)


class Target:
    """What the tests serve: a few calls, one of which fails."""

    def add(self, a, b):
        return a + b

    def echo(self, value):
        return value

    def fail(self, reason):
        raise ValueError(reason)

    def _private(self):
        return "never served"


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, PATIENCE_S))


@pytest.fixture
def served():
    address = new_address()
    server = ChannelServer(Target(), address)
    yield address
    server.close()


def test_a_frame_is_read_back_whole_however_the_bytes_arrive():
    left, right = socket.socketpair()
    payload = [("echo", (b"x" * 3_000_000,)), ("add", (1, 2))]
    writer = threading.Thread(target=left.sendall, args=(frame(payload),))
    writer.start()  # 3 MB: more than one socket buffer, so the reader sees it in pieces
    assert pickle.loads(read_frame(right)) == payload
    writer.join()
    left.close()
    with pytest.raises(EOFError):
        read_frame(right)
    right.close()


def test_the_blocking_client_calls_in_one_round_trip_and_raises_what_the_ledger_raised(served):
    ledger = LedgerChannel(served)
    assert ledger.add(2, 3) == 5
    assert ledger.call_many([("add", (1, 1)), ("echo", (b"\0bytes",)), ("fail", ("no",))])[:2] == [
        (True, 2),
        (True, b"\0bytes"),
    ]
    with pytest.raises(ValueError, match="why"):
        ledger.fail("why")
    with pytest.raises(AttributeError):
        ledger.call("_private")
    with pytest.raises(AttributeError):
        ledger.nothing_like_it()
    with pytest.raises(AttributeError):
        ledger._anything  # noqa: B018  (private names are never calls)
    again = pickle.loads(pickle.dumps(ledger))  # what a pool worker gets: the address, no socket
    assert (again.address, again.add(20, 22)) == (served, 42)
    ledger.disconnect()
    again.disconnect()


def test_the_calls_of_one_loop_turn_leave_in_one_frame():
    """A server of the test's own counts the frames and the operations in each."""
    address = new_address()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)
    frames = []

    def serve():
        connection, _ = listener.accept()
        with connection:
            connection.sendall(frame((os.getpid(), "life")))
            for _ in range(2):
                ops = pickle.loads(read_frame(connection))
                frames.append(ops)
                connection.sendall(frame([(True, args[0]) for _, args in ops]))

    thread = threading.Thread(target=serve)
    thread.start()

    async def calls():
        channel = AsyncChannel(address)
        first = await asyncio.gather(*(channel.call("echo", n) for n in range(50)))
        second = await channel.call("echo", "alone")
        channel.close()
        return first, second

    assert run(calls()) == (list(range(50)), "alone")
    thread.join()
    listener.close()
    assert [len(ops) for ops in frames] == [50, 1]


def test_async_calls_raise_what_the_ledger_raised(served):
    async def calls():
        channel = AsyncChannel(served)
        results = await asyncio.gather(channel.call("add", 1, 2), channel.call("fail", "bad"), return_exceptions=True)
        channel.close()
        return results

    total, failure = run(calls())
    assert total == 3
    assert isinstance(failure, ValueError) and str(failure) == "bad"


MANAGER = """
import sys, time
from store.channel import ChannelServer
class Target:
    def add(self, a, b):
        return a + b
ChannelServer(Target(), chr(0) + sys.argv[1])
print("ready", flush=True)
time.sleep(600)
"""


def start_manager(address):
    process = subprocess.Popen(
        [sys.executable, "-c", MANAGER, address.lstrip("\0")], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_manager_killed_is_unavailable_at_once_and_a_new_one_is_seen_as_a_restart():
    address = new_address()
    first = start_manager(address)

    async def scenario():
        channel = AsyncChannel(address, timeout_s=PATIENCE_S)  # so a StoreUnavailable is never the timeout's
        blocking = LedgerChannel(address, timeout_s=PATIENCE_S)
        assert await channel.call("add", 1, 1) == 2 and blocking.add(1, 1) == 2
        assert (channel.manager_pid, channel.restarted()) == (first.pid, False)
        first.send_signal(signal.SIGKILL)
        first.wait()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await channel.call("add", 1, 2)
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await channel.call("add", 1, 2)  # nobody listens: refused on connecting
        with pytest.raises(StoreUnavailable, match="unreachable"):
            blocking.add(1, 2)
        second = start_manager(address)
        try:
            assert await channel.call("add", 2, 2) == 4 and blocking.add(2, 2) == 4
            assert (channel.manager_pid, channel.restarts) == (second.pid, 1)
            assert channel.restarted() and not channel.restarted(), "told once"
        finally:
            second.kill()
            second.wait()
            channel.close()
            blocking.disconnect()

    run(scenario())


def test_a_manager_that_does_not_answer_is_unavailable_after_the_timeout_then_reconnected():
    address = new_address()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(2)

    def serve():
        silent, _ = listener.accept()  # greets, then never answers
        silent.sendall(frame((1, "one")))
        answering, _ = listener.accept()
        with answering:
            answering.sendall(frame((1, "one")))
            ops = pickle.loads(read_frame(answering))
            answering.sendall(frame([(True, "answered") for _ in ops]))
        silent.close()

    thread = threading.Thread(target=serve)
    thread.start()

    async def calls():
        channel = AsyncChannel(address, timeout_s=0.2)
        with pytest.raises(StoreUnavailable, match="did not answer in time"):
            await channel.call("echo", 1)
        answer = await channel.call("echo", 2)
        channel.close()
        return answer, channel.restarted()

    assert run(calls()) == ("answered", False)
    thread.join()
    listener.close()


def test_a_restarted_shared_ledger_is_unavailable_for_its_running_jobs_until_they_are_recorded_again(
    tmp_path, monkeypatch
):
    """The shared ledger, served and called as --frontends N does: jobs accepted before the manager
    died read 503 (StoreUnavailable), never "Invalid job_id", until their owner records them again."""
    monkeypatch.setattr(store.sharedledger, "SETTLE_S", 600.0)  # the window is not what is tested
    state = str(tmp_path)
    first_address, second_address = new_address(), new_address()
    first = ChannelServer(SharedLedger(state, True, RETENTION), first_address)
    done_reply = orjson.dumps({"status": "done", "data": 1})

    async def before():
        store = EmbeddedStore(first_address)
        first_id, _ = await store.accept("node#0", [("global_mean", b"{}"), ("states_mean", b"{}")])
        assert await store.lookup(first_id) == (200, RUNNING)
        assert LedgerChannel(first_address).finish([(first_id, "done", done_reply)]) is None
        assert await store.lookup(first_id) == (200, done_reply)
        await store.close()
        return first_id

    first_id = run(before())
    first.close()
    assert replay(tmp_path / JOURNAL).issued == first_id + 1, "accepting marks the ids issued"

    second = ChannelServer(SharedLedger(state, False, RETENTION), second_address)

    async def after():
        store = EmbeddedStore(second_address)
        assert await store.lookup(first_id) == (200, done_reply), "finished jobs are replayed"
        with pytest.raises(StoreUnavailable, match="restarted"):
            await store.lookup(first_id + 1)
        await store.restore("node#0", [(first_id + 1, "states_mean", b"{}")])
        assert await store.lookup(first_id + 1) == (200, RUNNING)
        assert await store.running(["node#0"]) == 1
        fresh, _ = await store.accept("node#1", [("global_mean", b"{}")])
        assert fresh > first_id + 1, "ids never go back"
        await store.close()

    run(after())
    second.close()


def test_a_shared_ledger_start_ends_the_jobs_a_crash_cut_short_and_ids_go_on_above(tmp_path):
    reply = orjson.dumps({"status": "done", "data": 2})
    crashed = SharedLedger(str(tmp_path), True, RETENTION)
    first, _ = crashed.accept("node#0", [("global_mean", b"{}"), ("global_mean", b"{}")])
    assert crashed.finish([(first, "done", reply)]) is None  # then the node dies: no clean stop
    again = SharedLedger(str(tmp_path), True, RETENTION)
    assert again.lookup(first) == (200, reply)
    assert again.lookup(first + 1) == (200, INTERRUPTED)
    assert again.accept("node#0", [("global_mean", b"{}")])[0] > first + 1


def test_a_query_one_front_end_answered_is_answered_for_the_others_only_when_asked(tmp_path):
    ledger = SharedLedger(str(tmp_path), True, RETENTION)
    query, other = ("global_mean", b'{"question": "Q1"}'), ("states_mean", b'{"question": "Q1"}')
    done = orjson.dumps({"status": "done", "data": 3})
    first, known = ledger.accept("node#0", [query], [0])
    assert known == {}, "nothing answered it yet"
    assert ledger.finish([(first, "done", done)]) is None
    second, known = ledger.accept("node#1", [other, query, query], [0, 1])
    assert known == {1: done}, "only the asked offsets, only for a query answered before"
    assert ledger.lookup(second + 1) == (200, RUNNING), "it runs until its owner journals the reply"
    failed, _ = ledger.accept("node#0", [other])
    assert ledger.finish([(failed, "error", orjson.dumps({"status": "error", "reason": "x"}))]) is None
    assert ledger.accept("node#1", [other], [0])[1] == {}, "an error is not an answer to reuse"
    ledger.keep_dataset("upload1", "mine.csv", b"")
    ledger.remove_dataset("upload1")
    assert ledger.accept("node#1", [query], [0])[1] == {}, "a removed data set takes the answers with it"


def test_an_answer_is_not_reused_once_retention_dropped_its_job(tmp_path):
    ledger = SharedLedger(str(tmp_path), True, (2, 2**20, None))
    query = ("global_mean", b"{}")
    first, _ = ledger.accept("node#0", [query])
    assert ledger.finish([(first, "done", b'{"status":"done","data":1}')]) is None
    for _ in range(2):
        newer, _ = ledger.accept("node#0", [("states_mean", b"{}")])
        assert ledger.finish([(newer, "error", b'{"status":"error","reason":"x"}')]) is None
    assert ledger.lookup(first)[0] == 404
    assert ledger.accept("node#1", [query], [0])[1] == {}


def test_dropped_jobs_watermark_is_journalled_once_an_interval_not_at_every_finish(tmp_path):
    """Each `expired_below` costs a scan of every kept job and may compact the journal: at every
    finish past the retention it made a long-running --frontends N server slower and slower."""
    ledger = SharedLedger(str(tmp_path), True, (2, 2**20, None), expire_every_s=3600.0)
    ids = []
    for _ in range(12):
        job_id, _ = ledger.accept("node#0", [("global_mean", b"{}")])
        assert ledger.finish([(job_id, "done", b'{"status":"done","data":1}')]) is None
        ids.append(job_id)
    lines = (tmp_path / JOURNAL).read_bytes().splitlines()
    assert sum(line.startswith(b'{"expired_below"') for line in lines) == 1
    assert [ledger.lookup(job_id)[0] for job_id in ids] == [404] * 10 + [200] * 2, "memory is trimmed at once"


def test_a_new_shared_ledger_never_gives_a_removed_uploads_id_again(tmp_path):
    """The manager is started again after a death: its counter must come from disk, not memory
    (a worker keeps a data set attached by its id, so a reused id served the removed file's numbers)."""
    ledger = SharedLedger(str(tmp_path), True, RETENTION)
    name = ledger.new_dataset_name()
    ledger.keep_dataset(name, "first.csv", b"x")
    ledger.remove_dataset(name)
    assert SharedLedger(str(tmp_path), False, RETENTION).new_dataset_name() != name


def test_an_index_damaged_under_a_running_shared_ledger_is_written_whole_again(tmp_path):
    """While its manager runs the shared ledger is the index's only writer and keeps it in memory:
    an index cut short meanwhile does not fail the next upload, which writes it whole again."""
    ledger = SharedLedger(str(tmp_path), True, RETENTION)
    kept = ledger.new_dataset_name()
    ledger.keep_dataset(kept, "kept.csv", b"x")
    index_path = tmp_path / "datasets" / "index.json"
    index_path.write_bytes(index_path.read_bytes()[:5])
    added = ledger.new_dataset_name()
    ledger.keep_dataset(added, "added.csv", b"y")
    assert added != kept
    assert ledger.datasets() == {kept: "kept.csv", added: "added.csv"}
    assert read_index(tmp_path / "datasets").sources == {kept: "kept.csv", added: "added.csv"}
