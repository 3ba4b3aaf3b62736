"""Every reply an error can produce is JSON; every call is logged on entry and exit."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from server.config import Config

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
        return "no such route; GET / lists the routes"
    if isinstance(error, web.HTTPMethodNotAllowed):
        return f"method {error.method} not allowed here; allowed: {', '.join(sorted(error.allowed_methods))}"
    return error.text or error.reason


def json_errors(config: Config) -> web.middleware:
    """Turn aiohttp's plain-text errors (404, 405, 413, ...) and crashes into JSON error replies."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return error_response(error.status, _reason(error, config.max_body))
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(500, "internal server error; the log has the details")

    return middleware


@web.middleware
async def log_calls(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Entry with the parameters (the body of a POST), exit with the status."""
    params: bytes | str = request.query_string
    if request.method == "POST" and (request.content_length or 0) <= 4096:
        try:
            params = (await request.read())[:512]
        except web.HTTPException:
            params = "(body over the size limit)"
    log.info("enter %s %s %s", request.method, request.path, params)
    response = await handler(request)
    log.info("exit %s %s %d", request.method, request.path, response.status)
    return response
