"""Recognise, in the bytes a connection received, a whole and plain HTTP/1.x request for one of the
two routes every job uses, and write its reply as bytes, exactly as aiohttp would have.

`scan` is deliberately narrow: it says "hot" only for a request it understands completely (request
line exactly `POST /api/<query>` or `GET /api/get_results/<id>[?wait=<s>]`, visible-ASCII headers
within aiohttp's limits, no header twice, a Content-Length body that
is all there, no Transfer-Encoding, Content-Encoding, Expect or Upgrade). For any other request it
can still measure (a request with a Content-Length, or none, whose head is all there) it gives
where it ends, so that request alone goes to aiohttp; for anything else (incomplete, odd, possibly an upgrade) it gives
None and the connection leaves all its bytes to aiohttp from then on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import NamedTuple

from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from compute.queries import KERNELS

# aiohttp's parser limits (RequestHandler's defaults, which the server keeps): a head shorter than
# the shortest of them cannot exceed any of them.
MAX_HEAD = 8190
MAX_HEADERS = 128

REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (/[!-~]*) HTTP/1\.([01])")
HEADER_LINES = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]++:[\t -~]*+\r\n)++")
QUERY_TARGETS = {f"/api/{kind}".encode(): kind for kind in KERNELS}
RESULTS_TARGET = re.compile(rb"/api/get_results/([0-9A-Za-z_]{1,64})(?:\?wait=([0-9.]{1,32}))?")
REFRAMED = frozenset((b"transfer-encoding", b"upgrade", b"sec-websocket-key1"))  # in doubt
LEFT_TO_AIOHTTP = frozenset((b"content-encoding", b"expect"))  # 415, 100-continue: aiohttp's


class Hot(NamedTuple):
    """A whole request for a hot route; `end` is where the next request starts in the buffer."""

    end: int
    method: str  # "POST" (a query) or "GET" (get_results)
    path: str
    name: str  # the query's kind, or the job id's text
    wait: str | None  # get_results' ?wait=
    body: bytes
    version: int  # the minor version: 1 or 0
    keep_alive: bool


class Headers(NamedTuple):
    """What a request's header lines say about it."""

    length: int | None  # Content-Length
    connection: bytes  # the Connection header, lower case: b"", b"close", b"keep-alive" or another
    host: bool
    plain: bool  # no Content-Encoding (415) or Expect (100-continue): else aiohttp's


NO_HEADERS = Headers(None, b"", False, True)


@functools.lru_cache(maxsize=1024)
def _headers(head: bytes) -> Headers | None:
    """What the header lines of a head (each ending in CRLF) say; cached, as a client sends the
    same few heads again and again. None unless each line is a token, a colon, then visible ASCII,
    spaces and tabs (no obs-fold, control bytes, obs-text, bare CR or LF), none comes twice (aiohttp
    refuses a second Host, Content-Length, ...), there are no more than aiohttp takes, none may
    reframe the connection and the Content-Length is plain digits: what aiohttp might read
    differently is left to it."""
    if not HEADER_LINES.fullmatch(head):
        return None
    lines = head[:-2].lower().split(b"\r\n")
    fields = dict([line.split(b":", 1) for line in lines])
    if len(fields) != len(lines) or len(lines) > MAX_HEADERS or not REFRAMED.isdisjoint(fields):
        return None
    length = fields.get(b"content-length")
    if length is not None:
        length = length.strip()
        if not (length.isdigit() and len(length) <= 12):
            return None
    return Headers(
        int(length) if length is not None else None,
        fields.get(b"connection", b"").strip(),
        b"host" in fields,
        LEFT_TO_AIOHTTP.isdisjoint(fields),
    )


def scan(buffer: bytes, start: int, max_query_body: int) -> Hot | int | None:
    """The request beginning at `start`: Hot, or the end of a whole request for aiohttp, or None."""
    head_end = buffer.find(b"\r\n\r\n", start, start + MAX_HEAD + 4)
    if head_end < 0:
        return None
    line_end = buffer.find(b"\r\n", start, head_end + 2)
    line = REQUEST_LINE.fullmatch(buffer, start, line_end)
    headers = _headers(buffer[line_end + 2 : head_end + 2]) if line_end < head_end else NO_HEADERS
    if line is None or headers is None:
        return None
    method, target, minor = line.groups()
    end = head_end + 4 + (headers.length or 0)
    if method == b"CONNECT":
        return None
    if len(buffer) < end:
        return end  # its body is still coming (a client that writes head and body apart): aiohttp's
    version = 1 if minor == b"1" else 0
    connection = headers.connection
    if (connection and connection not in (b"close", b"keep-alive")) or not (headers.host or version == 0):
        return end
    keep_alive = connection == b"keep-alive" if version == 0 else connection != b"close"
    if not keep_alive and len(buffer) > end:
        return None  # aiohttp's parser refuses the whole buffer ("Data after Connection: close")
    if not headers.plain:
        return end
    if method == b"POST":
        kind = QUERY_TARGETS.get(target)
        if kind is None or headers.length is None or headers.length > max_query_body:
            return end
        return Hot(end, "POST", target.decode(), kind, None, buffer[head_end + 4 : end], version, keep_alive)
    results = RESULTS_TARGET.fullmatch(target) if method == b"GET" and not headers.length else None
    if results is None:
        return end
    job, wait = results.groups()
    path = target.partition(b"?")[0].decode()
    return Hot(end, "GET", path, job.decode(), wait.decode() if wait else None, b"", version, keep_alive)


REASONS = {status.value: status.phrase for status in HTTPStatus}
SERVER = SERVER_SOFTWARE


def reply(version: int, status: int, body: bytes, headers: Mapping[str, str] | None, keep_alive: bool) -> bytes:
    """A JSON reply with the head aiohttp's web.Response writes for it (same headers, same order)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
    if version == 0:
        connection = "Connection: keep-alive\r\n" if keep_alive else ""
    else:
        connection = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"HTTP/1.{version} {status} {REASONS[status]}\r\n{extra}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nDate: {rfc822_formatted_time()}\r\nServer: {SERVER}\r\n{connection}\r\n"
    )
    return head.encode() + body
