"""Every reply an error can produce is JSON; every call is logged on entry and exit."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.config import Config
from server.logs import CallLog

log = logging.getLogger("lestats.http")


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    """API.md's error shape, whatever the status."""
    return web.Response(
        status=status,
        body=orjson.dumps({"status": "error", "reason": reason}),
        content_type="application/json",
        headers=headers,
    )


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
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(500, "internal server error; the log has the details")

    return middleware


QUERY_ROUTE = "query"


def log_calls(config: Config, calls: CallLog) -> Middleware:
    """Entry with the parameters (a query's JSON body, when small and within the limit), exit with
    the status. A body the handler must refuse (over the limit, or sent chunked) is left to it, and
    so is any other body (an upload is streamed by its handler)."""
    readable = min(4096, config.max_body)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        params: bytes | str = request.query_string
        if request.match_info.route.name == QUERY_ROUTE:
            length = request.content_length
            params = (
                (await request.read())[:512]
                if length is not None and length <= readable
                else f"(body of {length} bytes)"
            )
        calls.line("enter %s %s %s", request.method, request.path, params)
        response = await handler(request)
        calls.line("exit %s %s %d", request.method, request.path, response.status)
        return response

    return middleware
