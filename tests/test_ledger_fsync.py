"""The journal's durability modes (`--fsync`, store/ledger.py): what each promises a writer when
its call returns. fdatasync is wrapped to record, for each call, how much of the file it covers
(the size when it began) and made slow, so that writers overlap; nothing else is replaced."""

import os
import threading
import time

import orjson
import pytest

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


def write_concurrently(ledger, syncs, path):
    """WRITERS threads each finish WRITES_EACH jobs; for each call, whether some fdatasync that
    covered its line had ended when it returned."""
    covered_on_return = []

    def writer(first):
        for job_id in range(first, first + WRITES_EACH):
            assert ledger.finish([reply(job_id)]) is None
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


@pytest.mark.parametrize("mode", ["always", "batch"])
def test_with_fsync_on_a_write_returns_only_once_it_is_on_disk(tmp_path, syncs, mode):
    ledger = Ledger(str(tmp_path), fsync=mode)
    covered = write_concurrently(ledger, syncs, tmp_path / JOURNAL)
    assert len(covered) == WRITERS * WRITES_EACH
    assert all(covered), f"{covered.count(False)} writes returned before an fdatasync covered them"
    assert set(replay(tmp_path / JOURNAL).replies) == set(range(1, WRITERS * WRITES_EACH + 1))


def test_always_syncs_each_write_and_batch_shares_syncs_among_concurrent_writers(tmp_path, syncs):
    always = Ledger(str(tmp_path / "always"), fsync="always")
    write_concurrently(always, syncs, tmp_path / "always" / JOURNAL)
    assert len(syncs) == WRITERS * WRITES_EACH

    syncs.clear()
    batch = Ledger(str(tmp_path / "batch"), fsync="batch")
    write_concurrently(batch, syncs, tmp_path / "batch" / JOURNAL)
    assert 0 < len(syncs) < WRITERS * WRITES_EACH, "writers arriving during an fdatasync share the next one"


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
