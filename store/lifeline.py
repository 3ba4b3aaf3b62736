"""Children of the server leave SIGINT and SIGTERM to it, and die with it however it dies.

A stop as systemd does it (`KillMode=control-group`, or `kill -TERM -- -PGID`) signals every
process of the group at once. Only the server may act on it: it drains, journals a clean stop, then
stops its children itself. A worker or the forkserver dying of that signal first would take a queue
lock or the pool's means to start workers with it, and the stop would hang. So every child ignores
both signals (`leave_signals_to_the_server`).

A server that dies without stopping them (SIGKILL, the OOM killer) must not leave them behind:
each child calls `as_child_of(server_pid)`, which watches the server through a pidfd in a daemon
thread and ends the child the moment the server is gone. Why not PR_SET_PDEATHSIG on the server:
it fires when the *thread* that forked the child ends, not the process; our children are forked by
multiprocessing's forkserver, itself started by whichever server thread first needed it (an
executor thread, or a pool's own thread when it replaces a worker), so the signal would follow
that thread, not the server. A pidfd names the server itself, cannot be fooled by pid reuse, and
costs one sleeping thread per child.

PR_SET_PDEATHSIG is right one level down: a child of the forkserver was forked by the
forkserver's main thread, which lives exactly as long as it, so with it the child dies with the
forkserver too. Without that, a forkserver killed alone would leave workers the pool believes
dead (it learns of their exits from the forkserver) still reading its task queue beside their
replacements, and a manager that looks dead. With it, what the pool and the supervisor see is
true, and the supervisor restarts the ledger and the pool as after any crash. The forkserver itself
needs neither: it exits when the last holder of its "alive" pipe (the server and each child) is
gone, and the resource tracker when the last holder of its pipe is (it then unlinks the semaphores
still registered). Whatever shared
memory a crash leaves is reclaimed by the next start (`store.shm.reclaim_stale`).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading

ORPHANED_EXIT = 70
"""The exit status of a child whose server died (EX_SOFTWARE): nobody reads it but the forkserver."""
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_forkserver_pid: int | None = None
"""Set in the forkserver (`store.forkserver_preload`); a child forked from it inherits the value."""


def mark_forkserver() -> None:
    """Record this process as the forkserver its children must die with."""
    global _forkserver_pid
    _forkserver_pid = os.getpid()


def leave_signals_to_the_server() -> None:
    """Ignore SIGINT and SIGTERM: they are the server's to act on, even when sent to the group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def die_with(server_pid: int) -> None:
    """End this process at once when process `server_pid` ends (or now, if it already has)."""
    try:
        pidfd = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(ORPHANED_EXIT)
    threading.Thread(target=_exit_when_readable, args=(pidfd,), name="lifeline", daemon=True).start()


def _exit_when_readable(pidfd: int) -> None:
    """A pidfd becomes readable when its process has ended; os._exit skips clean-up meant for a
    live server (the journal is written line by line, so there is nothing to flush)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    os._exit(ORPHANED_EXIT)


def die_with_forkserver(forkserver_pid: int) -> None:
    """SIGKILL from the kernel when the forkserver, whose main thread forked us, ends; and end now
    if it already has (it died between our fork and this call: we were reparented)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != forkserver_pid:
        os._exit(ORPHANED_EXIT)


def as_child_of(server_pid: int) -> None:
    """What every child of the server runs first: leave it the signals, die with it, and (forked by
    the forkserver) die with the forkserver too. A child started another way (spawn) gets the first
    two."""
    leave_signals_to_the_server()
    if _forkserver_pid is not None:
        die_with_forkserver(_forkserver_pid)
    die_with(server_pid)
