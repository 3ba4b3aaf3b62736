"""The job ledger: finished jobs' states and the results journal, living in the manager process.

Workers hand the ledger their finished replies, which it appends to an orjson journal before the
worker reports them to the server: a job the server calls done is already on disk. The server
itself only reserves blocks of job ids here (so ids are never reused after a crash), tells it which
old jobs have expired, and reads everything back once at start.

Journal lines (one orjson object per line, each written with a single `write`):
  {"job": n, "reply": {...}}   a finished job's whole get_results reply (done or error)
  {"reserved": n}              ids up to n may be handed out (so a restart after a crash starts above)
  {"issued": n}                ids up to n have been handed out (written every few tens of ms)
  {"expired_below": n}         jobs below n have expired
  {"next": n}                  a clean stop: the next id to hand out is n
A torn last line (a crash mid-write) fails to parse and is cut off at the next start. A job that
was issued but has no reply at a start was cut short by a crash: the ledger journals it then as
an error, "interrupted by a restart", so it is a finished job like any other from then on. When expired
jobs make up at least half of the file, it is rewritten (to a temporary file, then renamed over it).

Durability (`--fsync`), like PostgreSQL's synchronous_commit or Redis' appendfsync:
  always  every write is followed by its own fdatasync before the call returns; writers wait in line.
  batch   the same promise, by group commit: the write returns once an fdatasync that began after it
          has ended; the writers that arrive while one runs share the next one, so under load there
          is one fdatasync per round of batches, not one per batch.
  off     the write is in the kernel's page cache when the call returns: it survives the server or
          the manager being killed, not a power cut or a kernel crash (the kernel writes it back
          within about 30 s).
With always or batch, a job is reported done only once its reply is on disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

JOURNAL = "journal.jsonl"
INTERRUPTED = orjson.dumps({"status": "error", "reason": "interrupted by a restart"})
COMPACT_AT_BYTES = 64 * 2**20
FSYNC_MODES = ("always", "batch", "off")


@dataclass
class Recovered:
    """What a restart finds on disk."""

    replies: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    next_id: int = 1
    expired_below: int = 1
    issued: int = 0
    clean: bool = True
    torn_bytes: int = 0


def replay(path: Path) -> Recovered:
    """Read a journal back; cut a torn tail so later appends start on a line boundary."""
    recovered = Recovered()
    if not path.exists():
        return recovered
    reserved = 0
    good_end = 0
    with open(path, "rb") as journal:
        for line in journal:
            if not line.endswith(b"\n"):
                break
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                break
            good_end += len(line)
            if "job" in entry:
                reply = entry["reply"]
                recovered.replies[entry["job"]] = (reply["status"], orjson.dumps(reply))
                recovered.next_id = max(recovered.next_id, entry["job"] + 1)
            elif "reserved" in entry:
                reserved = max(reserved, entry["reserved"])
                recovered.clean = False
            elif "issued" in entry:
                recovered.issued = max(recovered.issued, entry["issued"])
            elif "expired_below" in entry:
                recovered.expired_below = max(recovered.expired_below, entry["expired_below"])
            elif "next" in entry:
                recovered.next_id = max(recovered.next_id, entry["next"])
                recovered.clean = True
    if not recovered.clean:
        recovered.next_id = max(recovered.next_id, reserved + 1)
    for job_id in [job for job in recovered.replies if job < recovered.expired_below]:
        del recovered.replies[job_id]
    size = path.stat().st_size
    if size > good_end:
        recovered.torn_bytes = size - good_end
        os.truncate(path, good_end)
    return recovered


class Ledger:
    """Finished jobs' states by id (done or error) and the journal they are written to."""

    def __init__(self, state_dir: str, end_interrupted: bool = True, fsync: str = "batch") -> None:
        """`end_interrupted`: end issued jobs that have no reply (a server start, not a restart of
        the manager under a running server, whose unfinished jobs are still being worked on).
        `fsync`: one of FSYNC_MODES (see above)."""
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, not {fsync!r}")
        self._path = Path(state_dir) / JOURNAL
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one fdatasync at a time; the fd is not closed during one
        self._appended = 0  # appends so far (under _lock)
        self._synced = 0  # how many of them are on disk (under _sync_lock)
        self._states: dict[int, str] = {}
        self._fd = -1
        self._write_error: str | None = None
        self._reserved = 0
        self._expired_below = 1
        self._compacted_size = 0
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._recovered = replay(self._path)
        except OSError as error:
            self._failed(f"cannot read the journal {self._path}: {error}")
            self._recovered = Recovered()
        self._expired_below = self._recovered.expired_below
        self._reserved = self._recovered.next_id - 1
        self._issued = self._recovered.issued
        self._open()
        if end_interrupted:
            self._fail_interrupted()

    def _fail_interrupted(self) -> None:
        """Issued jobs with no reply were cut short by a crash: they end now, as errors."""
        recovered = self._recovered
        cut_short = [
            (job_id, "error", INTERRUPTED)
            for job_id in range(recovered.expired_below, recovered.issued + 1)
            if job_id not in recovered.replies
        ]
        if cut_short and self.finish(cut_short) is None:
            recovered.replies.update((job_id, (status, reply)) for job_id, status, reply in cut_short)

    def recovered(self) -> Recovered:
        return self._recovered

    def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Journal finished (job, status, reply) triples; returns None, or why they were not written."""
        lines = b"".join(
            orjson.dumps({"job": job_id, "reply": orjson.Fragment(reply)}) + b"\n" for job_id, _, reply in replies
        )

        top = max((job_id for job_id, _, _ in replies), default=0)

        def write() -> str | None:
            # Ids are handed out in order: a job's reply says every id up to it was issued. Marked
            # with it, so a job answered out of order (a cached answer overtaking the pool) never
            # leaves an older issued job looking unissued after a crash.
            marked = top > self._issued
            error = self._append(lines + (b'{"issued":%d}\n' % top if marked else b""))
            if error is None:
                self._issued = max(self._issued, top)
                # Results are saved again. Only this clears a failure: a later small write (an id
                # mark) fitting in the last few free bytes does not mean results can be saved.
                self._write_error = None
                for job_id, status, _ in replies:
                    self._states[job_id] = status
            return error

        return self._logged(write)

    def reserve(self, up_to: int) -> str | None:
        def write() -> str | None:
            error = self._append(orjson.dumps({"reserved": up_to}) + b"\n")
            if error is None:
                self._reserved = max(self._reserved, up_to)
            return error

        return self._logged(write)

    def issued(self, up_to: int) -> str | None:
        """Ids up to `up_to` have been handed out (so a crash can tell them from unused ones)."""

        return self._logged(lambda: self._mark_issued(up_to))

    def _mark_issued(self, up_to: int) -> str | None:
        """Append the mark (under `_lock`), without waiting for it to reach the disk."""
        if up_to <= self._issued:
            return None
        self._issued = up_to
        return self._append(orjson.dumps({"issued": up_to}) + b"\n")

    def expire_below(self, watermark: int) -> str | None:
        """Forget jobs below `watermark`; rewrite the journal once they fill most of it."""

        def write() -> str | None:
            if watermark <= self._expired_below:
                return None
            self._expired_below = watermark
            for job_id in [job for job in self._states if job < watermark]:
                del self._states[job_id]
            error = self._append(orjson.dumps({"expired_below": watermark}) + b"\n")
            if error is None and self._size() > max(COMPACT_AT_BYTES, 2 * self._compacted_size):
                error = self._compact()
            return error

        return self._logged(write)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "journal": str(self._path),
                "journal_bytes": self._size(),
                "fsync": self._fsync,
                "finished": len(self._states),
                "write_error": self._write_error,
            }

    def close(self, next_id: int) -> str | None:
        """A clean stop: record where the ids go on, and close the journal."""
        with self._lock:
            error = self._append(orjson.dumps({"next": next_id}) + b"\n")
            if error is None and self._fsync != "off":
                error = self._durable(self._appended)
            with self._sync_lock:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
            return error

    def _open(self) -> bool:
        try:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if self._fsync != "off":
                self._sync_directory()  # the journal's name, when this created it or a compaction renamed it
        except OSError as error:
            self._failed(f"cannot open the journal {self._path}: {error}")
            return False
        return True

    def _sync_directory(self) -> None:
        directory = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _size(self) -> int:
        try:
            return os.fstat(self._fd).st_size if self._fd >= 0 else 0
        except OSError:
            return 0

    def _append(self, data: bytes) -> str | None:
        """Write all of `data` or none of it: a failure (a full disk) truncates back, so a crash
        or a failure tears at most the last line, which replay cuts off."""
        if self._fd < 0 and not self._open():
            return self._write_error
        before = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            return self._failed(f"cannot write the journal {self._path}: {error}")
        self._appended += 1
        return None

    def _logged(self, write: Callable[[], str | None]) -> str | None:
        """Run `write` (its appends and the state that goes with them) under the lock; return once
        its appends are as durable as --fsync says. always: the fdatasync runs holding the lock,
        so each write gets its own. batch: it runs after the lock is released, so appends go on
        meanwhile and the next fdatasync covers them all (group commit)."""
        with self._lock:
            error = write()
            if error is None and self._fsync == "always":
                error = self._durable(self._appended)
            appended = self._appended
        if error is None and self._fsync == "batch":
            error = self._durable(appended)
        return error

    def _durable(self, appended: int) -> str | None:
        """Return once the first `appended` appends are on disk: an fdatasync that began after
        them covers them; waiting for the one running, a writer often finds itself covered."""
        with self._sync_lock:
            if self._synced >= appended:
                return None
            target = self._appended  # every append counted here has completed its write
            try:
                os.fdatasync(self._fd)
            except OSError as error:
                return self._failed(f"cannot sync the journal {self._path} to disk: {error}")
            self._synced = target
        return None

    def _failed(self, reason: str) -> str:
        self._write_error = reason
        return reason

    def _compact(self) -> str | None:
        """Rewrite the journal with only the jobs at or above the watermark."""
        temporary = self._path.with_suffix(".compacting")
        header = b"".join(
            orjson.dumps({key: value}) + b"\n"
            for key, value in (
                ("reserved", self._reserved),
                ("issued", self._issued),
                ("expired_below", self._expired_below),
            )
        )
        try:
            with open(self._path, "rb") as source, open(temporary, "wb") as target:
                target.write(header)
                for line in source:
                    if line.startswith(b'{"job":'):
                        job_id = int(line[7 : line.index(b",", 7)])
                        if job_id >= self._expired_below and line.endswith(b"\n"):
                            target.write(line)
                target.flush()
                os.fsync(target.fileno())
            os.replace(temporary, self._path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            return self._failed(f"cannot compact the journal {self._path}: {error}")
        with self._sync_lock:
            os.close(self._fd)
            self._fd = -1
            self._synced = self._appended  # all in the new file, which was synced before the rename
        self._open()
        self._compacted_size = self._size()
        return None
