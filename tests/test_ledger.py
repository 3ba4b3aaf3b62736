"""The job ledger on its own (store/ledger.py), in this process: what a restart reads back from the
journal after a clean stop, after a crash, after a torn write, after expiry and compaction, and what
a failed write reports. The server runs the same class inside its manager process."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

import store.ledger
from store.ledger import INTERRUPTED, JOURNAL, Ledger, replay


def done(job_id: int, value: float = 1.5) -> tuple[int, str, bytes]:
    return job_id, "done", orjson.dumps({"status": "done", "data": {"global_mean": value + job_id}})


def test_a_clean_stop_keeps_every_reply_and_ids_continue_exactly(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    assert ledger.reserve(10_000) is None
    assert ledger.finish([done(1), done(2)]) is None
    assert ledger.finish([(3, "error", orjson.dumps({"status": "error", "reason": "no value"}))]) is None
    assert ledger.close(4) is None

    recovered = Ledger(str(tmp_path)).recovered()
    assert recovered.clean
    assert recovered.next_id == 4
    assert recovered.replies == {
        1: ("done", done(1)[2]),
        2: ("done", done(2)[2]),
        3: ("error", b'{"status":"error","reason":"no value"}'),
    }
    assert recovered.torn_bytes == 0


def test_after_a_crash_ids_start_above_the_reserved_block_and_issued_jobs_end_interrupted(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    assert ledger.reserve(100) is None
    assert ledger.finish([done(1)]) is None
    assert ledger.issued(3) is None  # 2 and 3 were handed out and never answered; no close(): a crash

    recovered = Ledger(str(tmp_path)).recovered()
    assert not recovered.clean
    assert recovered.next_id == 101, "an id of the reserved block may have been handed out"
    assert recovered.replies[1] == ("done", done(1)[2])
    assert recovered.replies[2] == recovered.replies[3] == ("error", INTERRUPTED)
    assert 4 not in recovered.replies, "an id never issued is not a job"
    # The interruption is journalled itself: a third start reads the same.
    assert Ledger(str(tmp_path)).recovered().replies == recovered.replies


def test_a_torn_last_line_is_cut_and_later_appends_start_on_a_line(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    assert ledger.finish([done(1)]) is None
    ledger.close(2)
    journal = tmp_path / JOURNAL
    good = journal.read_bytes()
    torn = b'{"job": 2, "reply": {"status": "do'
    with open(journal, "ab") as tail:
        tail.write(torn)

    restarted = Ledger(str(tmp_path))
    assert restarted.recovered().torn_bytes == len(torn)
    assert journal.read_bytes() == good
    assert restarted.recovered().replies == {1: ("done", done(1)[2])}
    assert restarted.finish([done(2)]) is None
    restarted.close(3)
    assert set(replay(journal).replies) == {1, 2}


def test_expired_jobs_are_not_read_back_and_compaction_drops_them_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store.ledger, "COMPACT_AT_BYTES", 4096)
    ledger = Ledger(str(tmp_path))
    assert ledger.reserve(1000) is None
    assert ledger.finish([done(job_id) for job_id in range(1, 201)]) is None
    size_before = (tmp_path / JOURNAL).stat().st_size
    assert ledger.expire_below(191) is None
    assert (tmp_path / JOURNAL).stat().st_size < size_before / 5, "the journal was not compacted"
    assert ledger.health()["finished"] == 10
    ledger.close(201)

    recovered = replay(tmp_path / JOURNAL)
    assert sorted(recovered.replies) == list(range(191, 201))
    assert recovered.expired_below == 191
    assert recovered.next_id == 201


def test_a_failed_write_is_reported_and_leaves_no_partial_line(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC: the ledger says so, and health keeps saying so
    until results can be written again."""
    ledger = Ledger(str(tmp_path))
    ledger._fd = os.open("/dev/full", os.O_WRONLY)
    failure = ledger.finish([done(1)])
    assert failure is not None and "No space left on device" in failure
    assert ledger.health()["write_error"] == failure
    os.close(ledger._fd)
    ledger._fd = -1
    assert ledger.finish([done(2)]) is None
    assert ledger.health()["write_error"] is None
    ledger.close(3)
    assert set(replay(tmp_path / JOURNAL).replies) == {2}


def test_a_reply_marks_every_id_up_to_it_issued(tmp_path):
    """A cached answer can overtake older jobs still in the pool; after a crash those are
    "interrupted", never "Invalid job_id"."""
    ledger = Ledger(str(tmp_path))
    ledger.finish([(5, "done", b'{"status":"done","data":1}')])
    again = Ledger(str(tmp_path))  # a crash: no clean stop
    assert again.recovered().replies[4] == ("error", INTERRUPTED)
    assert again.recovered().replies[5][0] == "done"
