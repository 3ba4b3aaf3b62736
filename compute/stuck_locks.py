"""Tell when a pool can no longer move jobs: a queue lock held by a dead worker, a dead result thread.

A Pool worker waits for its next task inside the task queue's read lock, and sends each result
inside the result queue's write lock. A worker SIGKILLed while holding either takes the lock to its
grave: every other worker then waits on it forever, and so does `Pool.terminate()`. This is the
long-standing CPython issue behind "a killed worker hangs the pool". Releasing the lock for the
dead is not enough: a worker killed in the middle of a read or a write also leaves a torn message
in the pipe (a large result takes many writes), which breaks the next reader.

So the pool is declared broken, and the supervisor replaces it, when after a worker death a lock
stays held for `patience` checks in a row (with a task waiting, for the read lock: a live holder
reads a waiting task within microseconds), when the pool's result thread has died (it dies on a
torn result), or when its worker-maintenance thread has (it dies when it cannot start a worker,
e.g. on a forkserver killed at that moment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute.pool import QuietPool


@dataclass
class _Watched:
    lock: Any
    waiting: Any = None
    suspect: bool = False
    held_checks: int = 0


@dataclass
class BrokenPoolWatch:
    """Call `worker_died()` on each death and `check()` periodically: it says why the pool is
    broken, or None."""

    pool: QuietPool
    patience: int = 4
    _watched: dict[str, _Watched] = field(init=False)

    def __post_init__(self) -> None:
        inqueue, outqueue = self.pool._inqueue, self.pool._outqueue
        self._watched = {
            "task queue read lock": _Watched(inqueue._rlock, inqueue._reader),
            "result queue write lock": _Watched(outqueue._wlock),
        }

    def worker_died(self) -> None:
        for watched in self._watched.values():
            watched.suspect = True
            watched.held_checks = 0

    def check(self) -> str | None:
        if not self.pool._result_handler.is_alive():
            return "the pool's result thread died (a torn result from a killed worker)"
        if not self.pool._worker_handler.is_alive():
            return "the pool's worker-maintenance thread died (it could not start a worker)"
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
                return f"the pool's {name} is held by a dead worker"
        return None
