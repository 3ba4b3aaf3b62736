"""The HTTP connection layer, hardened against careless and hostile clients.

aiohttp's RequestHandler (one per connection) answers what its parser refuses (an over-long
request line, too many or too large headers, a bad method, malformed HTTP) in plain text, keeps a
half-sent request open until the keep-alive timeout (75 s), inflates gzip bodies inside the event
loop, and reads the rest of a refused body for up to 10 s. Here:

- every parser refusal is API.md's JSON with the right status (414 request line too long, 431
  headers too many or too large, 400 otherwise) and the connection is closed;
- a request's head must be complete within `header_timeout_s` of its first byte (or of the
  connection opening): else 408 JSON and the connection closes;
- a body must keep coming at `MIN_BODY_RATE` bytes a second on average over each `body_timeout_s`
  while a handler waits for it: else the handler's read fails with 408 (a slow drip of bytes
  cannot hold a connection for ever);
- an idle kept-alive connection is closed after KEEPALIVE_S (30 s, not 75 s);
- bodies are not decompressed at all (`server/guards.py` refuses a Content-Encoding with 415), and
  after a refused body at most `LINGER_S` seconds are spent reading what is left of it;
- refusals are logged through a BurstLog: one line and then a count, not one line per client.

aiohttp builds the handler inside its Server (`web_server.RequestHandler`); it has no setting for
the class, so `server/fastpath.py`'s `install()` points that name at a subclass of this one. The
app's `handler_args` carry the timeouts, so every connection of this app is guarded whatever runner serves it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from server.bursts import BurstLog
from server.middleware import INTERNAL_ERROR, BodyTimeout, error_response, excerpt

log = logging.getLogger("lestats.http")
BURSTS = BurstLog(log)

MIN_BODY_RATE = 1024  # bytes a second, averaged over each body timeout
LINGER_S = 1.0  # reading the unread rest of a refused body, before closing
# An idle kept-alive connection is closed after this (aiohttp's run_app: 75 s). It also bounds a half
# head pipelined in the same packet as a whole request, which the head deadline cannot see.
KEEPALIVE_S = 30.0


def _json_head(status: int, phrase: str, reason: str) -> bytes:
    """A whole HTTP/1.1 error reply, for the few cases answered before aiohttp has a request."""
    body = orjson.dumps({"status": "error", "reason": reason})
    head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return f"{head}Connection: close\r\n\r\n".encode() + body


class GuardedRequestHandler(RequestHandler):
    """A RequestHandler with JSON parser errors, head and body deadlines, and burst-logged refusals."""

    __slots__ = (
        "_body",
        "_body_received",
        "_body_timeout_s",
        "_head_timer",
        "_header_timeout_s",
        "_last_payload",
        "_line_bytes",
        "_line_open",
    )

    def __init__(self, manager: web.Server, *, header_timeout_s: float, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._body_timeout_s = body_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._line_bytes = 0  # the length of the request line (so far, while it is open)
        self._line_open = True
        self._body: StreamReader | None = None
        self._body_received = 0
        self._last_payload: StreamReader | None = None  # the body of the last request whose head came

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head()
        self._body = None
        super().connection_lost(exc)

    def _start_head(self) -> None:
        self._line_bytes, self._line_open = 0, True
        self._head_timer = self._loop.call_later(self._header_timeout_s, self._head_too_slow)

    def _stop_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self._last_payload is None or self._last_payload.is_eof()):
            self._start_head()  # the first bytes of the next request (kept alive, or pipelined)
        if self._line_open:
            end = data.find(b"\n")
            self._line_bytes += len(data) if end < 0 else end
            self._line_open = end < 0
        if self._body is not None:
            self._body_received += len(data)
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            self._stop_head()
            payload = self._messages[-1][1]
            self._last_payload = payload if isinstance(payload, StreamReader) else None
            if isinstance(payload, StreamReader) and not payload.is_eof():
                self._watch_body(payload)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport is None or self._messages:
            return
        if self._request_in_progress:  # a pipelined half head behind a running request: after it
            self._head_timer = self._loop.call_later(1.0, self._head_too_slow)
            return
        reason = f"the request's headers did not arrive within {self._header_timeout_s:g} s"
        BURSTS.error("408 slow request head", "closing a connection: %s", reason)
        self.transport.write(_json_head(408, "Request Timeout", reason))
        self.force_close()

    def _watch_body(self, payload: StreamReader) -> None:
        self._body, self._body_received = payload, 0
        self._loop.call_later(self._body_timeout_s, self._check_body, payload)

    def _check_body(self, payload: StreamReader) -> None:
        if payload is not self._body or payload.is_eof() or self.transport is None:
            return
        if self._body_received >= MIN_BODY_RATE * self._body_timeout_s:
            self._watch_body(payload)
            return
        self._body = None
        if not self._request_in_progress:  # answered already: lingering has its own bound
            return
        reason = f"the request body came slower than {MIN_BODY_RATE} bytes a second over {self._body_timeout_s:g} s"
        BURSTS.error("408 slow request body", "refusing a request: %s", reason)
        payload.set_exception(BodyTimeout(reason))

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """API.md's JSON for what the parser refused (and for a crash outside the app's middleware)."""
        status, reason = self._classify(status, exc)
        kind = f"{status} {type(exc).__name__}"  # never the client's text: a client cannot vary it
        if status >= 500:
            BURSTS.error(kind, "error handling a request: %s", reason, exc_info=exc)
        else:
            BURSTS.error(kind, "refusing a request from %s: %d %s", request.remote, status, reason)
        if request.writer.output_size > 0:
            raise ConnectionError("the reply was already started; cannot send an error instead")
        response = error_response(status, reason)
        response.force_close()
        return response

    def _classify(self, status: int, exc: BaseException | None) -> tuple[int, str]:
        if isinstance(exc, LineTooLong):
            if self._line_bytes > self.max_line_size:
                return 414, f"the request line is longer than {self.max_line_size} bytes"
            return 431, f"a request header is longer than {self.max_field_size} bytes"
        if isinstance(exc, BadHttpMethod):
            return 400, "the request line does not start with an HTTP method"
        if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc.message).lower():
            return 431, f"the request has more than {self.max_headers} headers"
        if isinstance(exc, HttpProcessingError):
            return 400, f"the request is not valid HTTP: {excerpt(str(exc.message), 80)}"
        if status == 504:
            return 504, "the request timed out"
        if status < 500:
            return status, "the request was refused"
        return 500, INTERNAL_ERROR


def handler_args(header_timeout_s: float, body_timeout_s: float) -> dict[str, Any]:
    """The Application's `handler_args`: passed to every connection's handler."""
    return {
        "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s,
        "auto_decompress": False,
        "lingering_time": LINGER_S,
        "keepalive_timeout": KEEPALIVE_S,
    }


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one: each client holds a descriptor, and a
    low soft limit (often 1024, or 256) lets a few hundred idle connections shut out the rest."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            log.error("cannot raise the open-file limit from %d to %d: %s", soft, wanted, error)
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: its errors (e.g. accept() failing for want of descriptors,
    once per connection attempt) are burst-logged to the service log."""
    message = str(context.get("message", "event loop error"))
    exception = context.get("exception")
    BURSTS.error(message, "event loop: %s: %s", message, exception or "", exc_info=exception)
