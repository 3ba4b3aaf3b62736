"""Refuse a compressed request body, or one declared over the limit, before anything reads it.

No route takes a compressed body, and inflating one is where a small request turns into a large
amount of work and memory (a 1 MB gzip bomb is a gigabyte). aiohttp's parser is told not to inflate
(`server/protocol.py`); here any Content-Encoding but identity is a 415, and the connection is
closed rather than read to the end.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.middleware import error_response, quoted

IDENTITY = frozenset({"", "identity"})


def refuse_encoded_bodies() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in IDENTITY and request.body_exists:
            response = error_response(
                415, f"Content-Encoding {quoted(encoding)} is not accepted: send the body uncompressed"
            )
            response.force_close()
            return response
        return await handler(request)

    return middleware


def declared_too_large(request: web.Request, limit: int, what: str) -> web.Response | None:
    """A 413 at once for a body whose Content-Length is over `limit`: without it the server would
    wait for a body it will refuse anyway (a client that waits for a reply first would get a 408)."""
    if request.content_length is not None and request.content_length > limit:
        response = error_response(413, f"{what} is larger than the limit of {limit} bytes")
        response.force_close()
        return response
    return None
