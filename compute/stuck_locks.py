"""Free a pool queue lock that a killed worker was holding.

A Pool worker waits for its next task inside the task queue's read lock, and sends each result
inside the result queue's write lock. A worker SIGKILLed while holding either takes the lock to its
grave: every other worker then waits on it forever, and so does `Pool.terminate()`. This is the
long-standing CPython issue behind "a killed worker hangs the pool".

The rule used here is safe because of what a live holder does: a live worker holding the read lock
reads a waiting task within microseconds, and a live worker holding the write lock finishes a
send within milliseconds. So a lock that stays held, after a worker death, for `patience` checks in
a row (with a task waiting, for the read lock) is held by the dead and is released for it.
(A worker killed in the middle of a read or a write can still tear that one message; that window
is a few microseconds wide and is not covered.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from typing import Any


@dataclass
class _Watched:
    lock: Any
    waiting: Any = None
    suspect: bool = False
    held_checks: int = 0


@dataclass
class StuckLockWatch:
    """Call `worker_died()` on each death and `check()` periodically; it returns what it freed."""

    pool: Pool
    patience: int = 4
    _watched: dict[str, _Watched] = field(init=False)

    def __post_init__(self) -> None:
        inqueue, outqueue = self.pool._inqueue, self.pool._outqueue  # type: ignore[attr-defined]
        self._watched = {
            "task queue read lock": _Watched(inqueue._rlock, inqueue._reader),
            "result queue write lock": _Watched(outqueue._wlock),
        }

    def worker_died(self) -> None:
        for watched in self._watched.values():
            watched.suspect = True
            watched.held_checks = 0

    def check(self) -> list[str]:
        freed = []
        for name, watched in self._watched.items():
            if not watched.suspect:
                continue
            if watched.lock._semlock._get_value() > 0:
                watched.suspect = False
                continue
            if watched.waiting is not None and not watched.waiting.poll():
                continue
            watched.held_checks += 1
            if watched.held_checks >= self.patience:
                watched.lock.release()
                watched.suspect = False
                freed.append(name)
        return freed
