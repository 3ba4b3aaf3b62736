"""Every reply an error can produce is JSON; every call is logged on entry and exit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from server.config import Config
from server.logs import CallLog
from server.redact import loggable

log = logging.getLogger("lestats.http")


MAX_REASON = 1000  # characters: a reason quotes at most an excerpt of what the client sent
EXCERPT = 120
INTERNAL_ERROR = "internal server error; the log has the details"


class BodyTimeout(TimeoutError):
    """A request body stopped coming, or came too slowly (set on the body by `server/protocol.py`).
    A TimeoutError, so that aiohttp's own reading of a refused body's rest stops quietly too."""


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """At most `limit` characters of a client's text, for quoting it back in a reason or a log."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} characters)"


def quoted(value: object) -> str:
    """`repr()` of a client's value, cut to an excerpt."""
    return excerpt(repr(value))


def error_body(reason: str) -> bytes:
    """API.md's error shape, whatever the status; the reason is cut to MAX_REASON characters."""
    return orjson.dumps({"status": "error", "reason": excerpt(reason, MAX_REASON)})


def error_response(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(reason), content_type="application/json", headers=headers)


def _reason(error: web.HTTPException, max_body: int) -> str:
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return f"the request body is larger than the limit of {max_body} bytes"
    if isinstance(error, web.HTTPNotFound):
        return "no such route; GET /api lists the routes"
    if isinstance(error, web.HTTPMethodNotAllowed):
        return f"method {error.method} not allowed here; allowed: {', '.join(sorted(error.allowed_methods))}"
    return error.text or error.reason


def json_errors(config: Config) -> Middleware:
    """Turn aiohttp's plain-text errors (404, 405, 413, ...) and crashes into JSON error replies."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            return error_response(error.status, _reason(error, config.max_body), headers)
        except BodyTimeout as error:
            return error_response(408, str(error))
        except RequestPayloadError as error:
            return error_response(400, f"the request body is not valid: {excerpt(str(error), 200)}")
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(500, INTERNAL_ERROR)

    return middleware


QUERY_ROUTE = "query"


def loggable_body(config: Config) -> int:
    """The largest query body the call log quotes (its first 512 bytes); a longer one is logged by size."""
    return min(4096, config.max_body)


def log_calls(config: Config, calls: CallLog) -> Middleware:
    """Entry with the parameters (a query's JSON body, when small and within the limit), exit with
    the status. A body the handler must refuse (over the limit, or sent chunked, or one that fails
    to arrive) is left to it, and so is any other body (an upload is streamed by its handler).
    Secrets in the URL (an admin token in a query string) never reach the log."""
    readable = loggable_body(config)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        params: bytes | str = loggable(request.query_string, config.admin_token)
        if request.match_info.route.name == QUERY_ROUTE:
            length = request.content_length
            params = f"(body of {length} bytes)"
            if length is not None and length <= readable:
                try:
                    params = (await request.read())[:512]
                except Exception:  # the handler's own read fails the same way and answers for it
                    params = "(unreadable body)"
        path = loggable(request.path, config.admin_token)
        calls.enter(request.method, path, params)
        response = await handler(request)
        calls.exit(request.method, path, response.status)
        return response

    return middleware
