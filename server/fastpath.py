"""The hot routes answered below aiohttp's Application: a lean HTTP/1.x path on the connection.

A job is two requests (POST /api/<query>, then GET /api/get_results/<id> until done), and through
aiohttp's web layer (Request and Response objects, the router, the middleware chain, the
StreamWriter) those two cost about as much CPU as a whole server that does no work. Here the
connection looks at the bytes it received; a whole, plain request for a hot route
(`server/rawhttp.py`) is answered by the same route logic as the aiohttp handlers
(`server/hot_routes.py`), with the same call-log lines, and its reply goes out in one write.
Everything else goes to aiohttp unchanged, and so does everything on a connection once anything
on it was in doubt (split or odd bytes).

Order on a connection is kept: a request is answered here only when aiohttp has nothing of this
connection in hand, and bytes that come while a reply here waits (a long-poll) are held until it
has gone. The 30 s keep-alive, Connection: close and HTTP/1.0 follow aiohttp's rules; a reply
waiting here counts as a request in progress, so a graceful stop waits for it as for aiohttp's.
`--http-fast-path off` leaves every request to aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web, web_server
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from server.config import Config
from server.hot_routes import (
    MAX_WAIT_S,
    Answer,
    Poll,
    error_answer,
    refuse_query,
    results_after,
    results_at_once,
    submit,
    submit_at_once,
)
from server.logs import CallLog
from server.middleware import INTERNAL_ERROR, loggable_body
from server.protocol import GuardedRequestHandler, handler_args
from server.rawhttp import Hot, reply, scan
from server.redact import loggable
from server.service import SERVICE, Service

log = logging.getLogger("lestats.http")

HELD_LIMIT = 64 * 1024  # bytes held behind a waiting reply before the connection stops reading


class HotRoutes:
    """What the fast path needs of the app: its service, the call log, the body limit for logging."""

    def __init__(self, app: web.Application, config: Config, calls: CallLog) -> None:
        self.app = app
        self.calls = calls
        self.max_query_body = loggable_body(config)
        self.secret = config.admin_token
        self._service: Service | None = None

    def begin(self, request: Hot) -> Answer | Awaitable[Answer]:
        """Log the entry and answer, at once when the route can; else an awaitable answer."""
        service = self._service or self.app[SERVICE]
        self._service = service
        if request.method == "POST":
            self.calls.enter("POST", loggable(request.path, self.secret), request.body[:512])
            answer = refuse_query(service) or submit_at_once(service, request.name, request.body)
            return answer or submit(service, request.name, request.body)
        query = f"wait={request.wait}" if request.wait is not None else ""
        self.calls.enter("GET", loggable(request.path, self.secret), loggable(query, self.secret))
        found = results_at_once(service, request.name, request.wait)
        return results_after(service, found) if isinstance(found, Poll) else found

    def end(self, request: Hot, status: int) -> None:
        self.calls.exit(request.method, loggable(request.path, self.secret), status)


def _crash(request: Hot) -> Answer:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_answer(500, INTERNAL_ERROR)


class FastRequestHandler(GuardedRequestHandler):
    """GuardedRequestHandler that answers whole hot requests itself (see the module's docstring)."""

    __slots__ = ("_aiohttp_done", "_fast", "_held", "_hot", "_owed", "_waiting")

    def __init__(self, manager: web.Server, *, hot: HotRoutes | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._hot = hot
        self._fast = hot is not None  # False for good once anything on the connection was in doubt
        self._aiohttp_done = 0  # requests aiohttp finished (its _request_count: requests it parsed)
        self._waiting: asyncio.Task[None] | None = None  # a reply waiting here
        self._held = b""  # what came while it waits
        self._owed = 0  # bytes still to come of a request whose head went to aiohttp

    def data_received(self, data: bytes) -> None:
        if not self._fast:
            super().data_received(data)
        elif self._owed:  # the rest of a request aiohttp has the head of
            self._fast = len(data) <= self._owed  # beyond it: a pipelined request, left to aiohttp
            self._owed -= min(len(data), self._owed)
            # A stop closes every connection (aiohttp's pre_shutdown) and aiohttp then drops what comes;
            # the rest of a body whose request is being answered still belongs to it.
            closing, self._close = self._close, self._close and not self._fast
            super().data_received(data)
            self._close = self._close or closing
        elif self._waiting is not None:
            self._held += data
            if len(self._held) > HELD_LIMIT and not self._buffer_paused:
                self._pause_reading_for_buffer()
        elif self._request_count != self._aiohttp_done or self._close or self._force_close:
            self._fast = False  # aiohttp has a request of this connection in hand
            super().data_received(data)
        else:
            self._serve(data)

    def _serve(self, data: bytes) -> None:
        """Answer the whole hot requests at the start of `data`; the rest goes to aiohttp."""
        assert self._hot is not None
        start = 0
        while start < len(data) and not self._paused and self.transport is not None:
            found = scan(data, start, self._hot.max_query_body)
            if not isinstance(found, Hot):
                if found is None or found < len(data):  # in doubt, or more than one request for aiohttp
                    self._fast = False
                else:
                    self._owed = found - len(data)
                break
            start = found.end
            self._stop_head()
            if not self._answer(found):
                self._held = data[start:]
                return
        else:
            if start < len(data):
                self._fast = False  # the client is not reading its replies: aiohttp's flow control
        if start < len(data) and self.transport is not None:
            super().data_received(data[start:])

    def _answer(self, request: Hot) -> bool:
        """Reply now and return True, or start the wait for the reply and return False."""
        assert self._hot is not None
        try:
            answer = self._hot.begin(request)
        except Exception:
            answer = _crash(request)
        if isinstance(answer, tuple):
            self._send(request, answer)
            return True
        self._request_in_progress = True
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout + MAX_WAIT_S
        self._waiting = self._loop.create_task(self._reply_later(request, answer))
        return False

    async def _reply_later(self, request: Hot, pending: Awaitable[Answer]) -> None:
        try:
            answer = await pending
        except Exception:
            answer = _crash(request)
        finally:
            self._request_in_progress = False
            if self._handler_waiter is not None and not self._handler_waiter.done():
                self._handler_waiter.set_result(None)  # a graceful stop was waiting for this reply
        self._waiting = None
        self._send(request, answer)
        held, self._held = self._held, b""
        if self._buffer_paused:
            self._resume_reading_for_buffer()
        if held and self.transport is not None:
            self.data_received(held)

    def _send(self, request: Hot, answer: Answer) -> None:
        assert self._hot is not None
        status, body, headers = answer
        self._hot.end(request, status)
        if self.transport is None:
            return
        self.transport.write(reply(request.version, status, body, headers, request.keep_alive))
        if not request.keep_alive:
            self.force_close()
            return
        close_time = self._loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)

    async def _handle_request(self, request: BaseRequest, *args: Any) -> tuple[StreamResponse, bool]:
        """aiohttp's handling of one request; counted, so the fast path knows when aiohttp is idle."""
        try:
            response, reset = await super()._handle_request(request, *args)
        finally:
            self._aiohttp_done += 1
        if reset or not response.keep_alive:
            self._fast = False  # aiohttp is about to close this connection
        return response, reset

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        super().connection_lost(exc)


def install() -> None:
    """Make aiohttp's Server build FastRequestHandler for every connection (it has no setting for
    the class); without HotRoutes in the handler args it is GuardedRequestHandler."""
    web_server.RequestHandler = FastRequestHandler  # type: ignore[attr-defined]


def fast_handler_args(config: Config, hot: HotRoutes | None) -> dict[str, Any]:
    """The Application's `handler_args`: the guards' timeouts and, when enabled, the hot routes."""
    return {**handler_args(config.header_timeout_s, config.body_timeout_s), "hot": hot}
