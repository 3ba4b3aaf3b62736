"""The job ledger: job states and the results journal, living in the manager process.

Workers hand the ledger their finished replies, which it appends to an orjson journal before the
worker reports them to the server: a job the server calls done is already on disk. The server itself only reserves blocks of
job ids here (so ids are never reused after a crash) and reads everything back once at start.

Journal lines (one orjson object per line, each written with a single `write`):
  {"job": n, "reply": {...}}   a finished job's whole get_results reply (done or error)
  {"reserved": n}              ids up to n may have been handed out
  {"next": n}                  a clean stop: the next id to hand out is n
A torn last line (a crash mid-write) fails to parse and is cut off at the next start.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from multiprocessing.managers import BaseManager
from pathlib import Path

import orjson

JOURNAL = "journal.jsonl"


@dataclass
class Recovered:
    """What a restart finds on disk."""

    replies: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    next_id: int = 1
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
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                break
            if not line.endswith(b"\n"):
                break
            good_end += len(line)
            if "job" in entry:
                reply = entry["reply"]
                recovered.replies[entry["job"]] = (reply["status"], orjson.dumps(reply))
                recovered.next_id = max(recovered.next_id, entry["job"] + 1)
            elif "reserved" in entry:
                reserved = max(reserved, entry["reserved"])
                recovered.clean = False
            elif "next" in entry:
                recovered.next_id = max(recovered.next_id, entry["next"])
                recovered.clean = True
    if not recovered.clean:
        recovered.next_id = max(recovered.next_id, reserved + 1)
    size = path.stat().st_size
    if size > good_end:
        recovered.torn_bytes = size - good_end
        os.truncate(path, good_end)
    return recovered


class Ledger:
    """Finished jobs' states by id (done or error) and the journal."""

    def __init__(self, state_dir: str) -> None:
        self._dir = Path(state_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / JOURNAL
        self._recovered = replay(self._path)
        self._lock = threading.Lock()
        self._states: dict[int, str] = {}
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._write_error: str | None = None

    def recovered(self) -> Recovered:
        return self._recovered

    def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Journal finished (job, status, reply) triples; returns None, or why they were not written."""
        lines = b"".join(
            orjson.dumps({"job": job_id, "reply": orjson.Fragment(reply)}) + b"\n"
            for job_id, _, reply in replies
        )
        with self._lock:
            error = self._append(lines)
            for job_id, status, _ in replies:
                self._states[job_id] = "error" if error else status
        return error

    def reserve(self, up_to: int) -> str | None:
        with self._lock:
            return self._append(orjson.dumps({"reserved": up_to}) + b"\n")

    def forget(self, job_ids: list[int]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._states.pop(job_id, None)

    def health(self) -> dict:
        with self._lock:
            return {"journal": str(self._path), "finished": len(self._states), "write_error": self._write_error}

    def close(self, next_id: int) -> str | None:
        """A clean stop: record where the ids go on, and close the journal."""
        with self._lock:
            error = self._append(orjson.dumps({"next": next_id}) + b"\n")
            os.close(self._fd)
            self._fd = -1
            return error

    def _append(self, data: bytes) -> str | None:
        """One write per call, so a crash tears at most the last line; undo a short write."""
        if self._fd < 0:
            return "the journal is closed"
        before = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as error:
            os.ftruncate(self._fd, before)
            self._write_error = f"cannot write the journal {self._path}: {error}"
            return self._write_error
        self._write_error = None
        return None


class LedgerManager(BaseManager):
    """The manager process that owns the ledger."""


LedgerManager.register("Ledger", Ledger)
