"""NumPy arrays in one multiprocessing.shared_memory segment per data set.

The owning process creates and unlinks; workers only attach. Python 3.11's resource tracker would
unlink a segment when any attaching process exits (and warn about "leaks" it does not own), so we
take segments out of its hands and own their whole life ourselves. Segment names carry the owner's
pid (`lestats_<pid>_<tag>`), so a start can tell segments left by a dead run (reclaim them) from a
live server's (leave them) and from other programs' (never touched).

The pool's queues use named POSIX semaphores, also files in /dev/shm (`sem.<name>`). Their names
are random (`mp-xxxxxxxx`), so after a crash nobody could tell ours from another program's; the
server gives them its own prefix (`sem.lestats_<pid>_sem-…`) so the same reclaiming covers them.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

PREFIX = "lestats_"
SHM_DIR = Path("/dev/shm")
_NAME = re.compile(rf"^(?:sem\.)?{PREFIX}(\d+)_[A-Za-z0-9_-]+$")
_ALIGN = 64


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str
    length: int
    offset: int


@dataclass(frozen=True)
class Layout:
    """Where each array lives inside a segment: picklable, sent to workers so they can attach."""

    segment: str
    arrays: tuple[ArraySpec, ...]
    size: int


@contextmanager
def _untracked() -> Iterator[None]:
    """Open or unlink a segment without telling the resource tracker.

    Unregistering afterwards is not enough: workers attaching at once race on the tracker's one
    shared entry. Python 3.13 has `track=False`; on 3.11 the registration call is skipped here.
    """
    register, unregister = resource_tracker.register, resource_tracker.unregister
    resource_tracker.register = resource_tracker.unregister = lambda name, rtype: None
    try:
        yield
    finally:
        resource_tracker.register, resource_tracker.unregister = register, unregister


class SharedArrays:
    """A segment holding named arrays; `views` are NumPy arrays over the shared bytes."""

    def __init__(self, segment: shared_memory.SharedMemory, layout: Layout, owner: bool) -> None:
        self.segment = segment
        self.layout = layout
        self.owner = owner
        self.views = {
            spec.name: np.ndarray((spec.length,), dtype=np.dtype(spec.dtype), buffer=segment.buf, offset=spec.offset)
            for spec in layout.arrays
        }

    @classmethod
    def create(cls, tag: str, arrays: dict[str, np.ndarray]) -> SharedArrays:
        """Copy `arrays` into a new segment named for this process and `tag`."""
        specs, offset = [], 0
        for name, array in arrays.items():
            specs.append(ArraySpec(name, array.dtype.str, len(array), offset))
            offset += -(-array.nbytes // _ALIGN) * _ALIGN
        name = f"{PREFIX}{os.getpid()}_{tag}"
        with _untracked():
            segment = shared_memory.SharedMemory(name=name, create=True, size=max(offset, 1))
        shared = cls(segment, Layout(name, tuple(specs), offset), owner=True)
        for array_name, array in arrays.items():
            shared.views[array_name][:] = array
        return shared

    @classmethod
    def attach(cls, layout: Layout) -> SharedArrays:
        with _untracked():
            segment = shared_memory.SharedMemory(name=layout.segment)
        return cls(segment, layout, owner=False)

    def close(self) -> None:
        """Drop the views, detach, and (owner only) unlink the segment."""
        self.views = {}
        self.segment.close()
        if self.owner:
            try:
                with _untracked():
                    self.segment.unlink()
            except FileNotFoundError:
                pass


def name_semaphores_after_this_process() -> None:
    """Prefix the semaphores multiprocessing creates from now on in this process with our owner tag
    (multiprocessing reads the prefix from the process's `_config`; there is no public setting)."""
    multiprocessing.current_process()._config["semprefix"] = f"/{PREFIX}{os.getpid()}_sem"  # type: ignore[attr-defined]


def owner_pid(segment: str) -> int | None:
    match = _NAME.match(segment)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim_stale(directory: Path = SHM_DIR) -> list[str]:
    """Unlink our segments whose owner process is gone; returns their names."""
    reclaimed = []
    for path in [*directory.glob(f"{PREFIX}*"), *directory.glob(f"sem.{PREFIX}*")]:
        pid = owner_pid(path.name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        reclaimed.append(path.name)
    return reclaimed
