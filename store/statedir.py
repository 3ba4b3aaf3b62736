"""One server per state directory: a second one would hand out the same job ids and data-set ids
and interleave its journal with the first's. The server holds an exclusive lock on a file in the
directory for as long as it runs; the kernel drops it when the process ends, however it ends."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "server.lock"
_held: list[int] = []  # the locked file stays open for the life of the process


def lock_state_dir(state_dir: Path) -> str | None:
    """Take the directory for this process; None, or why not (in use, or not writable)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        return f"cannot use the state directory {str(state_dir)!r}: {error.strerror or error}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return (
            f"the state directory {str(state_dir)!r} is in use by another server (pid {holder});"
            " give each server its own --state-dir"
        )
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.append(fd)
    return None
