"""The embedded job store for several front-ends on one machine: the ledger, shared.

It lives in the manager process, like the single front-end's ledger, and journals the same way,
but it also hands out the ids (one counter for every front-end, so ids stay dense and ordered), holds
the running jobs with their queries and the finished replies (so any front-end can answer for any
job), and applies the retention itself. It also remembers which finished job answered each query
(kind and body, as received), so a query one front-end answered is answered for the others too
without the pool (`accept`'s `ask`): each front-end's reply cache (server/answers.py) would otherwise
have to miss once for every query on its own. Front-ends reach it through its channel, from the event
loop (`EmbeddedStore`, store/channel.py): one frame per turn of the loop, whatever it carries.

A restarted manager (its process was killed; the node's parent starts a new one, which replays the
journal) knows the finished jobs but not the running ones: each front-end records its running jobs
again (`restore`) when it sees the new manager, and until then, for SETTLE_S, an id this store
does not know but may have handed out is "unavailable" (503), never "Invalid job_id".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from store.channel import AsyncChannel
from store.jobstore import EXPIRED, INVALID, RUNNING, Accepted, StoreUnavailable
from store.ledger import Ledger
from store.uploads import UPLOAD, UploadIndex, read_index, write_durably, write_index

RESERVE_BLOCK = 10_000
BULK_TIMEOUT_S = 60.0  # an uploaded CSV may be hundreds of MB
HEARTBEAT_TTL_S = 3.0
SETTLE_S = 1.0  # after a restart under running front-ends: each looks at least every 0.25 s
UNSETTLED = 503
EXPIRE_EVERY_S = 1.0  # how often dropped jobs' watermark is journalled, as the single front-end does
RetentionTuple = tuple[int, int, float | None]


class SharedLedger(Ledger):
    """Ledger + ids, running jobs and replies for every front-end of the machine."""

    def __init__(
        self,
        state_dir: str,
        end_interrupted: bool,
        retention: RetentionTuple,
        fsync: str = "batch",
        expire_every_s: float = EXPIRE_EVERY_S,
    ) -> None:
        """`end_interrupted`: a server start (see Ledger); else a restart after the manager process
        died under running front-ends: the system did not crash, so every id handed out is marked
        issued in the journal (`accept` appends the mark before it answers) and ids go on right
        after it, with no gap for the next start to take for jobs cut short."""
        super().__init__(state_dir, False, fsync)
        self._keep, self._max_bytes, self._ttl_s = retention
        recovered = self.recovered()
        now = time.monotonic()
        self._replies: dict[int, tuple[str, bytes, float]] = {
            job_id: (status, reply, now) for job_id, (status, reply) in sorted(recovered.replies.items())
        }
        self._bytes = sum(len(reply) for _, reply, _ in self._replies.values())
        self._next = recovered.next_id
        if not end_interrupted:
            self._next = max(recovered.issued, max(self._replies, default=0)) + 1
        self._expired_up_to = recovered.expired_below - 1
        self._running: dict[int, tuple[str, str, bytes]] = {}
        self._answered: dict[tuple[str, bytes], int] = {}  # (kind, body) -> the job that answered it ("done")
        self._expire_every_s = expire_every_s
        self._expire_next = 0.0  # when the watermark may be journalled again
        self._heartbeats: dict[str, float] = {}
        self._shared_lock = threading.Lock()
        self._datasets_dir = Path(state_dir) / "datasets"
        self._index: UploadIndex | None = None  # read once: while this manager runs, it is the only writer
        self._settle_until = 0.0 if end_interrupted else now + SETTLE_S
        self._trim()
        if end_interrupted:  # only now: finish() needs the fields above
            self._fail_interrupted()
        recovered.replies = {}  # the front-ends ask this store; no copy travels to them

    def accept(
        self, owner: str, jobs: Sequence[tuple[str, bytes]], ask: Sequence[int] = ()
    ) -> tuple[int, dict[int, bytes]] | str:
        """The first of len(jobs) new ids, with the replies this store has for the jobs at the
        offsets `ask` (those the front-end's cache missed); or why no id could be reserved (a
        journal write failed)."""
        with self._shared_lock:
            first, last = self._next, self._next + len(jobs) - 1
            if last > self._reserved:
                failure = self.reserve(last + RESERVE_BLOCK)
                if failure:
                    return failure
            with self._lock:  # on disk with the next fdatasync; a manager's death does not lose it
                failure = self._mark_issued(last)
            if failure:
                return failure
            self._next = last + 1
            for job_id, (kind, body) in enumerate(jobs, first):
                self._running[job_id] = (owner, kind, body)
            return first, self._answers(jobs, ask)

    def _answers(self, jobs: Sequence[tuple[str, bytes]], ask: Sequence[int]) -> dict[int, bytes]:
        """(Under `_shared_lock`.) A reply kept for the same query, by offset; the job still runs
        until its owner journals that reply as its own (`finish`)."""
        known = {}
        for offset in ask:
            kind, body = jobs[offset]
            job_id = self._answered.get((kind, body))
            finished = self._replies.get(job_id) if job_id is not None else None
            if finished is not None:
                known[offset] = finished[1]
        return known

    def restore(self, owner: str, jobs: Sequence[tuple[int, str, bytes]]) -> None:
        """Running jobs recorded again by their owner, after this manager replaced a dead one."""
        with self._shared_lock:
            self._heartbeats[owner] = time.monotonic()
            for job_id, kind, body in jobs:
                if job_id not in self._replies:
                    self._running[job_id] = (owner, kind, body)

    def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Journal and hold replies; the first reply of a job wins."""
        with self._shared_lock:
            fresh = [reply for reply in replies if reply[0] not in self._replies]
        if not fresh:
            return None
        failure = super().finish(fresh)
        if failure:
            return failure
        now = time.monotonic()
        with self._shared_lock:
            for job_id, status, reply in fresh:
                if job_id not in self._replies:
                    query = self._running.pop(job_id, None)
                    if query is not None and status == "done":
                        self._answered[query[1:]] = job_id
                    self._replies[job_id] = (status, reply, now)
                    self._bytes += len(reply)
            self._trim()
        return None

    def _trim(self) -> None:
        """Drop the oldest finished jobs beyond the retention; journal the new low mark."""
        oldest_kept = time.monotonic() - self._ttl_s if self._ttl_s is not None else None
        dropped = False
        while self._replies:
            job_id, (_, reply, finished_at) = next(iter(self._replies.items()))
            too_many = len(self._replies) > self._keep or self._bytes > self._max_bytes
            if not (too_many or (oldest_kept is not None and finished_at < oldest_kept)):
                break
            del self._replies[job_id]
            self._bytes -= len(reply)
            self._expired_up_to = max(self._expired_up_to, job_id)
            dropped = True
        while len(self._answered) > len(self._replies):  # those left point at dropped jobs
            del self._answered[next(iter(self._answered))]
        now = time.monotonic()
        if dropped and now >= self._expire_next:  # not at every finish: a watermark costs a scan
            self._expire_next = now + self._expire_every_s
            low = min(min(self._replies, default=self._next), min(self._running, default=self._next))
            self.expire_below(low)

    def lookup(self, job_id: int) -> tuple[int, bytes]:
        with self._shared_lock:
            if self._ttl_s is not None:
                self._trim()
            finished = self._replies.get(job_id)
            if finished is not None:
                return 200, finished[1]
            if job_id in self._running:
                return 200, RUNNING
            if 0 < job_id <= self._expired_up_to:
                return 404, EXPIRED
            if job_id < self._next and time.monotonic() < self._settle_until:
                return UNSETTLED, b"the job ledger was restarted; its running jobs are being recorded again"
            return 404, INVALID

    def statuses(self) -> list[tuple[int, str]]:
        with self._shared_lock:
            listed = [(job_id, status) for job_id, (status, _, _) in self._replies.items()]
            listed += [(job_id, "running") for job_id in self._running]
        return sorted(listed)

    def running(self, owners: Sequence[str] | None = None) -> int:
        with self._shared_lock:
            if owners is None:
                return len(self._running)
            wanted = set(owners)
            return sum(1 for owner, _, _ in self._running.values() if owner in wanted)

    def heartbeat(self, owner: str) -> None:
        with self._shared_lock:
            self._heartbeats[owner] = time.monotonic()

    def claim_orphans(self, owner: str, including_own: bool) -> list[Accepted]:
        """Jobs whose owner stopped its heartbeat (and, `including_own`, those of an earlier life
        of `owner`) move to `owner`."""
        now = time.monotonic()
        with self._shared_lock:
            self._heartbeats[owner] = now
            dead = {name for name, seen in self._heartbeats.items() if now - seen > HEARTBEAT_TTL_S}
            live = set(self._heartbeats) - dead
            claimed = []
            for job_id, (holder, kind, body) in self._running.items():
                if (holder == owner and including_own) or (holder != owner and holder not in live):
                    claimed.append(Accepted(job_id, kind, body))
            for job_id, kind, body in claimed:
                self._running[job_id] = (owner, kind, body)
            for name in dead:
                del self._heartbeats[name]
        return claimed

    def new_dataset_name(self) -> str:
        """`upload<n>`, never given before: the index keeps the next n on disk, so neither a new
        manager nor a restart (with any number of front-ends) gives a removed upload's id again."""
        with self._shared_lock:
            index = self._uploads()
            self._write_uploads(UploadIndex(index.sources, index.next_number + 1))
            return f"{UPLOAD}{index.next_number}"

    def keep_dataset(self, name: str, label: str, content: bytes) -> None:
        """The file and the index, as the single front-end keeps them (store/uploads.py), so a
        restart with one front-end finds them too."""
        write_durably(self._datasets_dir / f"{name}.csv", content)  # outside the lock: it may be large
        with self._shared_lock:
            index = self._uploads()
            self._write_uploads(UploadIndex({**index.sources, name: label}, index.next_number))

    def datasets(self) -> dict[str, str]:
        with self._shared_lock:
            return self._uploads().sources

    def dataset_content(self, name: str) -> bytes:
        return (self._datasets_dir / f"{name}.csv").read_bytes()

    def remove_dataset(self, name: str) -> None:
        with self._shared_lock:
            index = self._uploads()
            sources = {kept: source for kept, source in index.sources.items() if kept != name}
            self._write_uploads(UploadIndex(sources, index.next_number))
            self._answered.clear()  # its queries' answers; a name taken again later is another data set
            (self._datasets_dir / f"{name}.csv").unlink(missing_ok=True)

    def _uploads(self) -> UploadIndex:
        if self._index is None:
            self._index = read_index(self._datasets_dir, missing_ok=True)
        return self._index

    def _write_uploads(self, index: UploadIndex) -> None:
        write_index(self._datasets_dir, index)
        self._index = index

    def close(self, next_id: int) -> str | None:
        """A front-end stopped: journal where the ids go on; the journal stays open for the others."""
        with self._shared_lock, self._lock:
            return self._append(b'{"next":%d}\n' % max(next_id, self._next))


class EmbeddedStore:
    """The JobStore of `--frontends N` without --store: the shared ledger, through its channel."""

    description = "embedded"

    def __init__(self, address: str) -> None:
        self.channel = AsyncChannel(address)

    async def accept(
        self, owner: str, jobs: Sequence[tuple[str, bytes]], ask: Sequence[int] = ()
    ) -> tuple[int, dict[int, bytes]]:
        accepted = await self.channel.call("accept", owner, list(jobs), list(ask))
        if isinstance(accepted, str):
            raise StoreUnavailable(f"cannot reserve job ids: {accepted}")
        first, known = accepted
        return int(first), known

    async def restore(self, owner: str, jobs: Sequence[Accepted]) -> None:
        await self.channel.call("restore", owner, [tuple(job) for job in jobs])

    async def lookup(self, job_id: int) -> tuple[int, bytes]:
        status, body = await self.channel.call("lookup", job_id)
        if status == UNSETTLED:
            raise StoreUnavailable(body.decode())
        return int(status), bytes(body)

    async def statuses(self) -> list[tuple[int, str]]:
        return list(await self.channel.call("statuses"))

    async def running(self, owners: Sequence[str] | None = None) -> int:
        return int(await self.channel.call("running", None if owners is None else list(owners)))

    async def heartbeat(self, owner: str) -> None:
        await self.channel.call("heartbeat", owner)

    async def claim_orphans(self, owner: str, including_own: bool) -> list[Accepted]:
        return [Accepted(*job) for job in await self.channel.call("claim_orphans", owner, including_own)]

    async def new_dataset_name(self) -> str:
        return str(await self.channel.call("new_dataset_name"))

    async def keep_dataset(self, name: str, label: str, content: bytes) -> None:
        await self.channel.call("keep_dataset", name, label, content, timeout_s=BULK_TIMEOUT_S)

    async def datasets(self) -> dict[str, str]:
        return dict(await self.channel.call("datasets"))

    async def dataset_content(self, name: str) -> bytes:
        return bytes(await self.channel.call("dataset_content", name, timeout_s=BULK_TIMEOUT_S))

    async def remove_dataset(self, name: str) -> None:
        await self.channel.call("remove_dataset", name)

    def restarted(self) -> bool:
        """Whether a new manager process (the old one died) answered since the last call."""
        return self.channel.restarted()

    async def health(self) -> dict[str, Any]:
        return {"store": self.description}

    async def close(self) -> None:
        self.channel.close()
