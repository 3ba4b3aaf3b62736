"""The journal's durability modes (`--fsync`, store/ledger.py, server/group_commit.py): what each
promises a writer when its call returns. fdatasync is wrapped to record, for each call, how much of the file it covers
(the size when it began) and made slow, so that writers overlap; nothing else is replaced."""

import asyncio
import os
import threading
import time

import orjson
import pytest

from server.group_commit import GroupCommit
from store import ledger as ledger_module
from store.ledger import JOURNAL, Ledger, replay

WRITERS = 6
WRITES_EACH = 5


@pytest.fixture
def syncs(monkeypatch):
    """The sizes of the journal when each fdatasync began."""
    covered = []
    lock = threading.Lock()

    def slow_fdatasync(fd):
        size = os.fstat(fd).st_size
        time.sleep(0.01)
        os.fsync(fd)
        with lock:
            covered.append(size)

    monkeypatch.setattr(ledger_module.os, "fdatasync", slow_fdatasync)
    return covered


def reply(job_id):
    return (job_id, "done", orjson.dumps({"status": "done", "data": {"job": job_id}}))


def write_concurrently(ledger, syncs, path, then_sync=False):
    """WRITERS threads each finish WRITES_EACH jobs (and with `then_sync`, call sync() after each);
    for each, whether some fdatasync that covered its line had ended when the calls returned."""
    covered_on_return = []

    def writer(first):
        for job_id in range(first, first + WRITES_EACH):
            assert ledger.finish([reply(job_id)]) is None
            if then_sync:
                assert ledger.sync() is None
            synced = max(syncs, default=0)
            text = path.read_bytes()
            line = orjson.dumps({"job": job_id, "reply": orjson.loads(reply(job_id)[2])}) + b"\n"
            covered_on_return.append(text.index(line) + len(line) <= synced)

    threads = [threading.Thread(target=writer, args=(1 + n * WRITES_EACH,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return covered_on_return


@pytest.mark.parametrize(("mode", "then_sync"), [("always", False), ("batch", True)])
def test_with_fsync_on_a_write_is_on_disk_when_it_or_sync_returns(tmp_path, syncs, mode, then_sync):
    ledger = Ledger(str(tmp_path), fsync=mode)
    covered = write_concurrently(ledger, syncs, tmp_path / JOURNAL, then_sync)
    assert len(covered) == WRITERS * WRITES_EACH
    assert all(covered), f"{covered.count(False)} writes returned before an fdatasync covered them"
    assert set(replay(tmp_path / JOURNAL).replies) == set(range(1, WRITERS * WRITES_EACH + 1))


def test_always_syncs_each_write_and_batch_shares_syncs_among_concurrent_callers(tmp_path, syncs):
    always = Ledger(str(tmp_path / "always"), fsync="always")
    write_concurrently(always, syncs, tmp_path / "always" / JOURNAL)
    assert len(syncs) == WRITERS * WRITES_EACH

    syncs.clear()
    batch = Ledger(str(tmp_path / "batch"), fsync="batch")
    covered = write_concurrently(batch, syncs, tmp_path / "batch" / JOURNAL)
    assert syncs == [], "with batch, a write does not wait for the disk"
    assert not any(covered)
    write_concurrently(Ledger(str(tmp_path / "shared"), fsync="batch"), syncs, tmp_path / "shared" / JOURNAL, True)
    assert 0 < len(syncs) < WRITERS * WRITES_EACH, "callers arriving during an fdatasync share the next one"


async def test_group_commit_reports_replies_only_after_a_sync_that_began_after_they_landed():
    """GroupCommit (server/group_commit.py): each round's replies wait for one sync that starts
    after they were handed in; replies landing during a sync wait for the next one."""
    events = []
    delivered = []
    release = threading.Event()

    def sync():
        events.append("sync begins")
        release.wait(5)
        events.append("sync ends")

    commit = GroupCommit(sync, lambda replies: (events.append(f"deliver {len(replies)}"), delivered.extend(replies)))
    commit.deliver([reply(1), reply(2)])
    for _ in range(500):  # until the first sync is running
        if events:
            break
        await asyncio.sleep(0.01)
    commit.deliver([reply(3)])
    commit.deliver([reply(4)])
    assert delivered == []
    release.set()
    for _ in range(200):
        if len(delivered) == 4:
            break
        await asyncio.sleep(0.01)
    assert events == ["sync begins", "sync ends", "deliver 2", "sync begins", "sync ends", "deliver 2"]
    assert [job_id for job_id, _, _ in delivered] == [1, 2, 3, 4]


async def test_group_commit_turns_a_failed_sync_into_errors_with_the_reason():
    delivered = []
    commit = GroupCommit(lambda: "cannot sync: [Errno 5] EIO", delivered.extend)
    commit.deliver([reply(1)])
    for _ in range(200):
        if delivered:
            break
        await asyncio.sleep(0.01)
    assert [(job_id, status, orjson.loads(body)) for job_id, status, body in delivered] == [
        (1, "error", {"status": "error", "reason": "the result could not be saved: cannot sync: [Errno 5] EIO"})
    ]


def test_off_never_syncs_and_keeps_the_same_journal(tmp_path, syncs):
    ledger = Ledger(str(tmp_path), fsync="off")
    write_concurrently(ledger, syncs, tmp_path / JOURNAL)
    assert ledger.close(WRITERS * WRITES_EACH + 1) is None
    assert syncs == []
    recovered = replay(tmp_path / JOURNAL)
    assert set(recovered.replies) == set(range(1, WRITERS * WRITES_EACH + 1))
    assert (recovered.clean, recovered.next_id) == (True, WRITERS * WRITES_EACH + 1)


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fsync must be one of"):
        Ledger(str(tmp_path), fsync="sometimes")
