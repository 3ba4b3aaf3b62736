"""The job store: where job ids, states and results live when more than one process serves them.

`python -m server` alone needs none of it: its one front-end keeps its own jobs (server/jobs.py)
and journals them through the ledger. With several front-ends (`--frontends N`) or several nodes
(`--store redis://...`) a job accepted by one process must be readable from every other, so each
accepted job is recorded in a store before its id is returned, and a job a process does not hold
is read from the store. Two stores speak this protocol: the embedded one (the ledger's manager
process, store/sharedledger.py) and Redis (store/redisstore.py).

Writes are batched by the caller (one call per turn of the event loop, server/shared.py), so a
store's cost is one round trip per batch, not per job. A store call that cannot reach the store
raises StoreUnavailable after a bounded time (at most about a second).

Results are written by whoever computes them through the synchronous `finish` of a `Ledger`
(compute/worker.py), the same call the single-process server journals with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

RUNNING = b'{"status":"running"}'
EXPIRED = b'{"status":"error","reason":"expired"}'
INVALID = b'{"status":"error","reason":"Invalid job_id"}'


class StoreUnavailable(ConnectionError):
    """The store cannot be reached now; the message says why, for a person."""


class Accepted(NamedTuple):
    """A job as recorded while it runs: enough for another process to run it again."""

    job_id: int
    kind: str
    body: bytes


class Ledger(Protocol):
    """What computes results writes them with (a worker, or the reply cache's path)."""

    def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Record finished (job, status, reply); None, or why they were not saved."""


class JobStore(Protocol):
    """The async side a front-end uses; every method may raise StoreUnavailable."""

    description: str

    async def accept(
        self, owner: str, jobs: Sequence[tuple[str, bytes]], ask: Sequence[int] = ()
    ) -> tuple[int, dict[int, bytes]]:
        """Give the (kind, body) jobs consecutive new ids, record them running under `owner`,
        and return the first id, with any reply the store has for the same query as a job at
        an offset in `ask` (the caller's cache missed those). Ids are never handed out twice."""

    async def restore(self, owner: str, jobs: Sequence[Accepted]) -> None:
        """Record again `owner`'s running jobs (not those already finished), after the store
        restarted and may have lost them."""

    async def lookup(self, job_id: int) -> tuple[int, bytes]:
        """get_results' status code and body for a job this process does not hold."""

    async def statuses(self) -> list[tuple[int, str]]:
        """Every kept job and its status, in id order."""

    async def running(self, owners: Sequence[str] | None = None) -> int:
        """How many jobs are running: of these owners, or of the whole service."""

    async def heartbeat(self, owner: str) -> None:
        """`owner` is alive; an owner that stops calling this is taken to be dead."""

    async def claim_orphans(self, owner: str, including_own: bool) -> list[Accepted]:
        """Move to `owner` the running jobs of dead owners (and, `including_own`, its own from an
        earlier life of the same name)."""

    async def new_dataset_name(self) -> str:
        """A data-set id never handed out before (`upload<n>`)."""

    async def keep_dataset(self, name: str, label: str, content: bytes) -> None:
        """Keep an uploaded CSV so that every process (and every later start) loads it."""

    async def datasets(self) -> dict[str, str]:
        """The kept uploads: id -> the file name it was uploaded as."""

    async def dataset_content(self, name: str) -> bytes:
        """A kept upload's CSV."""

    async def remove_dataset(self, name: str) -> None:
        """Forget an upload; every process drops it at its next look."""

    def restarted(self) -> bool:
        """Whether the store restarted (and may have lost recent writes) since the last call."""

    async def health(self) -> dict[str, Any]:
        """What an operator should know about the store."""

    async def close(self) -> None:
        """Release connections."""
