"""Admin routes (graceful_shutdown, data-set upload and removal) are not for everyone.

Without a token, only loopback clients may call them, so an original client on the same machine
works unchanged. With --admin-token (or $LESTATS_ADMIN_TOKEN) they need `Authorization: Bearer
<token>` from anywhere, loopback included.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import wraps

from aiohttp import web
from aiohttp.typedefs import Handler

from server.middleware import error_response

ADMIN_TOKEN = web.AppKey("admin_token", str)


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def refusal(request: web.Request) -> str | None:
    """Why this request may not call an admin route, or None if it may."""
    token = request.app.get(ADMIN_TOKEN)
    if not token:
        if is_loopback(request.remote):
            return None
        return "admin routes accept only loopback clients unless the server has an admin token"
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return "this admin route needs 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "the admin token is wrong"
    return None


def admin_only(handler: Handler) -> Handler:
    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        reason = refusal(request)
        if reason is not None:
            return error_response(403, reason)
        return await handler(request)

    return guarded
