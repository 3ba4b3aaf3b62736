"""A cheap channel to the ledger's manager process: length-prefixed pickle frames on a unix socket.

The multiprocessing.managers proxy costs a thread hop on each side and its own dispatch per call
(measured here: 100-300 us of CPU a call), and a front-end reached it through asyncio.to_thread. On
the hot paths (accepted jobs, reads of other front-ends' jobs, journalled results, issued-id marks)
the manager process also serves this channel: a thread per connection reads a frame, which may
carry many operations, runs them on the ledger in order and answers with one frame of outcomes.

- Front-ends use `AsyncChannel` from the event loop: the calls of one loop turn leave in one frame,
  replies are read by the loop itself (no thread), and frames are pipelined on one connection.
- Workers and the front-end's threads use `LedgerChannel`, a small blocking client that pickles as
  its address only, so a pool initializer can carry it to the workers.

Frames are pickle, not orjson: operations carry bytes (queries, whole replies) and tuples that JSON
would turn into base64 or lists, and pickle is the fastest codec CPython has for them. Only our own
processes speak here: the socket is in the abstract namespace (nothing to clean up after a
SIGKILL) and the manager accepts only peers of its own user (SO_PEERCRED), who could as well
ptrace it; and only the ledger's public methods can be called.

The server greets each connection with (its pid, a token of this life): a client that sees a new
token knows the manager was restarted under it. A manager that is gone refuses or drops the
connection at once; one that does not answer within the call's timeout has the connection
dropped. Both raise StoreUnavailable; the next call connects afresh.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from store.jobstore import StoreUnavailable

HEADER = struct.Struct("!Q")
CALL_TIMEOUT_S = 1.0  # a front-end's calls: a hung manager makes queries 503 within about a second
BLOCKING_TIMEOUT_S = 10.0  # a worker's journal write may wait for a slow fdatasync; a miss only re-sends
PEERCRED = struct.Struct("3i")
Op = tuple[str, tuple[Any, ...]]
Outcome = tuple[bool, Any]  # (True, the result) or (False, the exception it raised)


def new_address() -> str:
    """A fresh abstract socket name: the leading NUL keeps it out of the file system."""
    return f"\0lestats-ledger-{os.getpid()}-{os.urandom(8).hex()}"


def frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def unreachable(error: BaseException | str) -> StoreUnavailable:
    return StoreUnavailable(f"the job ledger is unreachable: {error}")


def unwrap(outcome: Outcome) -> Any:
    ok, value = outcome
    if ok:
        return value
    raise value


class ChannelServer:
    """The manager's side: serves `target`'s public methods to every connection, in a thread each."""

    def __init__(self, target: object, address: str) -> None:
        self._target = target
        self._methods = frozenset(name for name in dir(target) if not name.startswith("_"))
        self.hello = frame((os.getpid(), os.urandom(8).hex()))
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(address)
        self._listener.listen(128)
        threading.Thread(target=self._accept, name="channel-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            _, uid, _ = PEERCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
            if uid != os.getuid():
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), name="channel", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.sendall(self.hello)
                while True:
                    ops: list[Op] = pickle.loads(read_frame(connection))
                    connection.sendall(frame([self.run(name, args) for name, args in ops]))
            except (OSError, EOFError):
                return  # the client went away

    def run(self, name: str, args: tuple[Any, ...]) -> Outcome:
        if name not in self._methods:
            return False, AttributeError(f"the ledger has no method {name!r}")
        try:
            return True, getattr(self._target, name)(*args)
        except Exception as error:  # the caller gets it raised, as from a local call
            return False, error

    def close(self) -> None:
        self._listener.close()


def read_exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        received = connection.recv_into(view[got:])
        if not received:
            raise EOFError("the connection was closed")
        got += received
    return bytes(data)


def read_frame(connection: socket.socket) -> bytes:
    (size,) = HEADER.unpack(read_exactly(connection, HEADER.size))
    return read_exactly(connection, size)


class LedgerChannel:
    """A blocking client, safe to share between threads (one call at a time). `ledger.finish(...)`
    and any other public method of the ledger is a call; every failure to reach it is a
    StoreUnavailable. Pickled, it is its address and timeout: a new process connects anew."""

    def __init__(self, address: str, timeout_s: float = BLOCKING_TIMEOUT_S) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def __getstate__(self) -> tuple[str, float]:
        return self.address, self.timeout_s

    def __setstate__(self, state: tuple[str, float]) -> None:
        self.__init__(*state)  # type: ignore[misc]  # the same fresh state a new client has

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.call(name, *args)

    def call(self, name: str, *args: Any) -> Any:
        return unwrap(self.call_many([(name, args)])[0])

    def call_many(self, ops: list[Op]) -> list[Outcome]:
        """Many operations, one round trip."""
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = self._connect()
                self._socket.sendall(frame(ops))
                outcomes: list[Outcome] = pickle.loads(read_frame(self._socket))
                return outcomes
            except (OSError, EOFError) as error:
                self.disconnect()
                raise unreachable(error) from error

    def _connect(self) -> socket.socket:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(self.timeout_s)
            connection.connect(self.address)
            read_frame(connection)  # the greeting
        except BaseException:
            connection.close()
            raise
        return connection

    def disconnect(self) -> None:
        """(Not `close`: that is the ledger's, a call like any other.)"""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class AsyncChannel(asyncio.Protocol):
    """The event loop's client: the calls made in one turn of the loop leave as one frame; the
    loop reads the replies. Use it from one event loop only."""

    def __init__(self, address: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.manager_pid: int | None = None
        self.restarts = 0  # new managers seen since the first
        self._life: str | None = None
        self._restarted = False
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queued: list[tuple[Op, asyncio.Future[Any], float]] = []
        self._flush_soon = False
        self._in_flight: deque[tuple[list[asyncio.Future[Any]], asyncio.TimerHandle]] = deque()
        self._buffer = bytearray()
        self._greeted = False
        self._why_lost: str | None = None

    async def call(self, name: str, *args: Any, timeout_s: float | None = None) -> Any:
        """The ledger's `name(*args)`, sent with the rest of this loop turn's calls."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append(((name, args), future, timeout_s or self.timeout_s))
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        return await future

    def restarted(self) -> bool:
        """Whether a new manager answered since the last time this was asked."""
        restarted, self._restarted = self._restarted, False
        return restarted

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._queued:
            return
        if self._transport is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return  # sent once connected
        queued, self._queued = self._queued, []
        self._transport.write(frame([op for op, _, _ in queued]))
        timer = asyncio.get_running_loop().call_later(max(timeout for _, _, timeout in queued), self._timed_out)
        self._in_flight.append(([future for _, future, _ in queued], timer))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.setblocking(False)
        try:
            await loop.sock_connect(connection, self.address)
            await loop.create_unix_connection(lambda: self, sock=connection)
        except OSError as error:
            connection.close()
            self._fail_queued(unreachable(error))
        finally:
            self._connecting = None
        if self._transport is None:
            self._fail_queued(unreachable("the connection was lost at once"))
        self._flush()

    def _fail_queued(self, error: StoreUnavailable) -> None:
        queued, self._queued = self._queued, []
        for _, future, _ in queued:
            if not future.done():
                future.set_exception(error)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self._greeted = False

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + size
            if len(self._buffer) < end:
                return
            payload = pickle.loads(memoryview(self._buffer)[HEADER.size : end])
            del self._buffer[:end]
            if self._greeted:
                self._answer(payload)
            else:
                self._greet(payload)

    def _greet(self, hello: tuple[int, str]) -> None:
        self._greeted = True
        self.manager_pid, life = hello
        if self._life is not None and life != self._life:
            self._restarted = True
            self.restarts += 1
        self._life = life

    def _answer(self, outcomes: list[Outcome]) -> None:
        futures, timer = self._in_flight.popleft()
        timer.cancel()
        for future, (ok, value) in zip(futures, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _timed_out(self) -> None:
        self._why_lost = "it did not answer in time"
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails what is in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buffer.clear()
        error = unreachable(exc or self._why_lost or "the manager closed the connection")
        self._why_lost = None
        while self._in_flight:
            futures, timer = self._in_flight.popleft()
            timer.cancel()
            for future in futures:
                if not future.done():
                    future.set_exception(error)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
