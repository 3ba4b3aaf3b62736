"""Admin routes (graceful_shutdown, data-set upload and removal) are not for everyone.

Without a token, only loopback clients may call them, so an original client on the same machine
works unchanged. With --admin-token (or $LESTATS_ADMIN_TOKEN) they need `Authorization: Bearer
<token>` from anywhere, loopback included.

Whoever the client is, an admin route also refuses what a web page could make a browser send:
- HEAD (aiohttp answers HEAD with the GET handler; a HEAD must never shut the server down);
- a cross-site request: `Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` that is not
  the server itself (a form on another site posting to /api/datasets);
- without a token, a `Host` that is neither a loopback name nor the configured host: a page whose
  own name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import wraps
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from server.middleware import error_response, quoted

ADMIN_TOKEN = web.AppKey("admin_token", str)
ADMIN_HOST = web.AppKey("admin_host", str)
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name part of a Host header or an Origin's netloc: no port, no IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback_name(name: str, configured: str | None) -> bool:
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name) or name == configured


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names this server, as the client reached it (its Host)."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False
    netloc, default = parts.netloc, DEFAULT_PORTS[parts.scheme]
    host = host.strip().lower()
    return netloc == host or netloc == f"{host}:{default}" or f"{netloc}:{default}" == host


def cross_site(request: web.Request) -> str | None:
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in FOREIGN_SITES:
        return f"admin routes refuse requests from other sites (Sec-Fetch-Site: {site})"
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin, request.headers.get("Host", "")):
        return f"admin routes refuse requests from other sites (Origin: {quoted(origin)})"
    return None


def refusal(request: web.Request) -> str | None:
    """Why this request may not call an admin route, or None if it may."""
    foreign = cross_site(request)
    if foreign:
        return foreign
    token = request.app.get(ADMIN_TOKEN)
    if not token:
        if not is_loopback(request.remote):
            return "admin routes accept only loopback clients unless the server has an admin token"
        host = request.headers.get("Host")
        if host is not None and not is_loopback_name(host_name(host), request.app.get(ADMIN_HOST)):
            return f"admin routes accept only a loopback Host without an admin token, not {quoted(host)}"
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return "this admin route needs 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "the admin token is wrong"
    return None


def admin_only(handler: Handler) -> Handler:
    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return error_response(405, "an admin route never runs on HEAD; use GET", {"Allow": "GET"})
        reason = refusal(request)
        if reason is not None:
            response = error_response(403, reason)
            if request.body_exists:
                response.force_close()  # do not read the refused body
            return response
        return await handler(request)

    return guarded
