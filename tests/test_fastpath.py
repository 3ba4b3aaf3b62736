"""The connection-level fast path (server/fastpath.py, server/rawhttp.py) answers exactly as aiohttp.

Two apps run in process side by side, one with `http_fast_path` on and one with it off, each over
the bundled sample with its own state dir, so the same requests in the same order get the same job
ids. Raw bytes go to both over plain sockets; every reply (status line, headers but Date, body) and
every call-log line must be the same. Order on a connection (pipelining, long-polls), requests that
arrive a byte at a time, HTTP/1.0, Connection: close and odd or huge inputs are covered, and `scan`
is checked on its own against what it must and must not take.
"""

import asyncio
import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from conftest import PROJECT_ROOT

from server.app import CONFIG, create_app
from server.config import Config
from server.middleware import INTERNAL_ERROR
from server.rawhttp import Hot, scan
from server.service import SERVICE

SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
OBESITY = "Percent of adults aged 18 years and older who have obesity"
READ_TIMEOUT_S = 20.0
MAX_BODY = 64 * 1024


def post(path, body, headers=b"", version=b"1.1"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b"POST %s HTTP/%s\r\nHost: test\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        version,
        headers,
        len(data),
        data,
    )


def get(path, headers=b"", version=b"1.1", host=b"Host: test\r\n"):
    return b"GET %s HTTP/%s\r\n%s%s\r\n" % (path.encode(), version, host, headers)


QUERY = post("/api/states_mean", {"question": OBESITY})
# Headers the fast path leaves to aiohttp, with the rest of the connection: what aiohttp refuses,
# reads differently, or might switch protocols on.
ODD_HEADERS = [
    b"Host: again\r\n",
    b"X-Folded: a\r\n  b\r\n",
    b"X-Bad: \x01\r\n",
    b"X-Nul: \x00\r\n",
    b"X-Latin: \xe9\r\n",
    b"X-Bare: a\nY: b\r\n",
    b"Bad Name: x\r\n",
    b"NoColon\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n0",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"Content-Length: 1\r\ncontent-length: 1\r\n\r\nx",
    b"Content-Length: -1\r\n",
    b"X-Long: " + b"y" * 9000 + b"\r\n",
    b"".join(b"X-%d: y\r\n" % n for n in range(200)),
]
STATE_QUERY = post("/api/state_mean", {"question": OBESITY, "state": "Ohio"})


async def read_reply(reader, with_body=True):
    """(status line, headers without Date, body) of one reply."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    status, *lines = head[:-4].decode().split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    length = int(dict(headers).get("Content-Length", 0)) if with_body else 0
    body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S)
    return status, [(name, value) for name, value in headers if name != "Date"], body


async def exchange(port, data, replies=1, pieces=1):
    """Send `data` on a new connection (in `pieces` writes), read `replies` replies, and say whether
    the server closed the connection after them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            writer.write(data[start : start + size])
            await writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.001)
        got = [await read_reply(reader, not data.startswith(b"HEAD ")) for _ in range(replies)]
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
        except TimeoutError:
            closed = False
        return got, closed
    finally:
        writer.close()


async def on_both(tmp_path, scenario):
    """Run `scenario(server)` on an app with the fast path off, then on one with it on (one at a
    time: shared-memory names are per process); asserts both returned the same and wrote the same
    call log, and returns what the fast one returned."""
    results, logs = [], []
    for fast in (False, True):
        state_dir = tmp_path / f"fast-{fast}"
        config = Config(data=SAMPLE, workers=1, state_dir=state_dir, http_fast_path=fast, max_body=MAX_BODY)
        server = TestServer(create_app(config))
        await server.start_server()
        try:
            results.append(await scenario(server))
        finally:
            await server.close()
        logs.append(call_log(state_dir))
    assert results[1] == results[0]
    assert logs[1] == logs[0]
    return results[1]


def call_log(state_dir: Path) -> list[str]:
    """The call log's lines without their time stamps."""
    lines = (state_dir / "webserver.log").read_text().splitlines()
    return [line.split(" ", 1)[1] for line in lines if " INFO lestats.http: " in line]


async def exchanges(server, *requests, **options):
    return [await exchange(server.port, data, **options) for data in requests]


# ---------------------------------------------------------------------------------------------
# The same replies, whole requests


SINGLE = [
    QUERY,
    STATE_QUERY,
    post("/api/best5", b"not json"),
    post("/api/best5", b"[1]"),
    post("/api/best5", {"question": "no such question"}),
    post("/api/state_mean", {"question": OBESITY}),
    post("/api/state_mean", {"question": OBESITY, "state": "Atlantis"}),
    post("/api/best5", {"question": OBESITY, "years": [2020, 2011]}),
    post("/api/best5", b""),
    post("/api/best5", {"question": OBESITY}, version=b"1.0"),
    post("/api/best5", {"question": OBESITY}, headers=b"Connection: close\r\n"),
    post("/api/best5?x=1", {"question": OBESITY}),
    post("/api/nosuchquery", {"question": OBESITY}),
    post("/api/best5", {"question": OBESITY}, headers=b"Content-Encoding: gzip\r\n"),
    post("/api/best5", {"question": OBESITY, "pad": "x" * 5000}),  # logged by size, not quoted
    post("/api/best5", {"question": OBESITY, "pad": "x" * MAX_BODY}),  # over the limit: 413
    get("/api/get_results/1?wait=5"),
    get("/api/get_results/job_id_2?wait=5"),
    get("/api/get_results/1"),
    get("/api/get_results/1", version=b"1.0", host=b""),
    get("/api/get_results/1", version=b"1.0", headers=b"Connection: keep-alive\r\n"),
    get("/api/get_results/1", headers=b"Connection: close\r\n"),
    get("/api/get_results/1", headers=b"connection:   Keep-Alive  \r\n"),
    get("/api/get_results/999999"),
    get("/api/get_results/job_id_abc"),
    get("/api/get_results/0"),
    get("/api/get_results/1?wait=x"),
    get("/api/get_results/1?wait=31"),
    get("/api/get_results/1?wait=1.2.3"),
    get("/api/get_results/1?wait=0&token=secret"),
    get("/api/get_results/" + "9" * 100),
    get("/api/get_results/%31"),
    get("/api/get_results/1", host=b""),  # HTTP/1.1 without Host: aiohttp's 400
    *(get("/api/get_results/1", headers=headers) for headers in ODD_HEADERS),
    get("/api/get_results/1", headers=b"Expect: 100-continue\r\n"),
    b"HEAD /api/get_results/1 HTTP/1.1\r\nHost: test\r\n\r\n",
    b"DELETE /api/get_results/1 HTTP/1.1\r\nHost: test\r\n\r\n",
    b"GET /api/num_jobs HTTP/1.1\r\nHost: test\r\n\r\n",
    b"GET /api/get_results/1 HTTP/2.0\r\nHost: test\r\n\r\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n{",
    b"POST /api/best5 HTTP/1.1\r\nHost: test\r\nContent-Length: +2\r\n\r\n{}",
]


async def test_every_reply_and_call_log_line_is_the_same_on_both_paths(tmp_path):
    async def scenario(server):
        replies = await exchanges(server, *SINGLE)
        service = server.app[SERVICE]
        service.draining = True
        replies += await exchanges(server, QUERY)
        service.draining = False
        service.unavailable = "the job ledger is restarting"
        replies += await exchanges(server, QUERY)
        service.unavailable = None
        return replies

    replies = await on_both(tmp_path, scenario)
    statuses = [got[0][0] for got, _ in replies]
    assert statuses[:2] == ["HTTP/1.1 200 OK"] * 2 and "HTTP/1.1 415 Unsupported Media Type" in statuses
    assert "HTTP/1.1 413 Request Entity Too Large" in statuses and "HTTP/1.0 200 OK" in statuses
    done = json.loads(replies[SINGLE.index(get("/api/get_results/1?wait=5"))][0][0][2])
    assert done["status"] == "done" and "Ohio" in done["data"]
    assert statuses[-2:] == ["HTTP/1.1 503 Service Unavailable"] * 2 and ("Retry-After", "1") in replies[-1][0][0][1]
    assert "INFO lestats.http: enter GET /api/get_results/1 wait=0&token=***" in call_log(tmp_path / "fast-True")


# ---------------------------------------------------------------------------------------------
# Order, packets, connection semantics


async def test_pipelined_requests_are_answered_in_order_whatever_path_each_takes(tmp_path):
    data = (
        QUERY
        + get("/api/get_results/1?wait=10")  # a long-poll on the job just submitted
        + get("/api/num_jobs")  # aiohttp's
        + get("/api/get_results/999999")
        + post("/api/best5", b"not json")
        + STATE_QUERY
        + get("/api/get_results/2?wait=10")
        + get("/api/jobs")
        + get("/api/get_results/1")
    )
    ((got, closed),) = await on_both(tmp_path, lambda server: exchanges(server, data, replies=9))
    assert not closed
    bodies = [json.loads(body) for _, _, body in got]
    assert bodies[0] == {"job_id": "job_id_1"} and bodies[1]["status"] == "done"
    assert "num_jobs" in bodies[2] and bodies[3]["reason"] == "Invalid job_id"
    assert bodies[4] == {"status": "error", "reason": "the body is not valid JSON"}
    assert bodies[5] == {"job_id": "job_id_2"} and bodies[6]["status"] == "done"
    assert bodies[7]["data"] == [{"job_id_1": "done"}, {"job_id_2": "done"}] and bodies[8] == bodies[1]


async def test_requests_arriving_a_byte_at_a_time_get_the_same_replies(tmp_path):
    data = QUERY + get("/api/get_results/1?wait=10") + get("/api/get_results/1", headers=b"Connection: close\r\n")
    ((got, closed),) = await on_both(tmp_path, lambda server: exchanges(server, data, replies=3, pieces=len(data)))
    assert closed and json.loads(got[1][2])["status"] == "done" and got[2] == got[1][:1] + got[2][1:]


async def test_a_split_request_then_whole_ones_on_the_same_connection(tmp_path):
    """Once a request was split, the connection stays with aiohttp, and still answers the same."""
    data = QUERY[:10], QUERY[10:] + get("/api/get_results/1?wait=10") + QUERY

    async def scenario(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for piece in data:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        got = [json.loads((await read_reply(reader))[2]) for _ in range(3)]
        writer.close()
        return got

    got = await on_both(tmp_path, scenario)
    assert got[0] == {"job_id": "job_id_1"} and got[1]["status"] == "done" and got[2] == {"job_id": "job_id_2"}


@pytest.mark.parametrize(
    "request_bytes, closes",
    [
        (get("/api/get_results/1", version=b"1.0", host=b""), True),
        (get("/api/get_results/1", version=b"1.0", headers=b"Connection: keep-alive\r\n"), False),
        (get("/api/get_results/1", headers=b"Connection: close\r\n"), True),
        (get("/api/get_results/1"), False),
        (post("/api/best5", {"question": OBESITY}, version=b"1.0"), True),
    ],
)
async def test_keep_alive_and_close_follow_aiohttp(tmp_path, request_bytes, closes):
    data = request_bytes + get("/api/get_results/1")
    ((_, closed),) = await on_both(tmp_path, lambda server: exchanges(server, data, replies=1))
    assert closed == closes


async def test_a_long_poll_answers_after_its_wait_and_holds_what_follows(tmp_path):
    """A long-poll on a running job (one never sent to the pool) answers "running" after its wait,
    and the request pipelined behind it is answered after it; once the job finishes, "done"."""

    async def scenario(server):
        jobs = server.app[SERVICE].jobs
        job_id = await jobs.open()
        got, _ = await exchange(server.port, get(f"/api/get_results/{job_id}?wait=0.3") + get("/api/num_jobs"), 2)
        jobs.finish([(job_id, "done", b'{"status":"done","data":{}}')])
        done, _ = await exchange(server.port, get(f"/api/get_results/{job_id}"))
        return [json.loads(body) for _, _, body in got + done]

    assert await on_both(tmp_path, scenario) == [
        {"status": "running"},
        {"num_jobs": 1},
        {"status": "done", "data": {}},
    ]


async def test_a_client_that_leaves_during_a_long_poll_does_not_disturb_the_server(tmp_path):
    async def scenario(server):
        jobs = server.app[SERVICE].jobs
        job_id = await jobs.open()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get(f"/api/get_results/{job_id}?wait=20"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.1)
        jobs.finish([(job_id, "done", b'{"status":"done","data":{}}')])
        got, _ = await exchange(server.port, get(f"/api/get_results/{job_id}"))
        return json.loads(got[0][2])

    assert await on_both(tmp_path, scenario) == {"status": "done", "data": {}}


async def test_many_requests_pipelined_behind_a_long_poll_wait_for_it_in_order(tmp_path):
    """More than the fast path holds while a reply waits (it stops reading, then reads on)."""
    behind = [get(f"/api/get_results/{900_000 + n}", headers=b"X-Pad: %s\r\n" % (b"p" * 64)) for n in range(700)]

    async def scenario(server):
        jobs = server.app[SERVICE].jobs
        job_id = await jobs.open()
        data = get(f"/api/get_results/{job_id}?wait=0.3") + b"".join(behind)
        got, _ = await exchange(server.port, data, replies=1 + len(behind))
        jobs.finish([(job_id, "done", b"{}")])  # or the stop would wait for it
        return [body for _, _, body in got]

    bodies = await on_both(tmp_path, scenario)
    assert len(b"".join(behind)) > 64 * 1024
    assert json.loads(bodies[0]) == {"status": "running"}
    assert set(bodies[1:]) == {b'{"status":"error","reason":"Invalid job_id"}'}


async def test_a_request_that_comes_while_aiohttp_handles_the_one_before_waits_for_it(tmp_path):
    async def scenario(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/api/health"))  # aiohttp's, and it awaits the ledger
        await writer.drain()
        writer.write(QUERY)
        writer.write(get("/api/get_results/1?wait=10"))
        await writer.drain()
        got = [json.loads((await read_reply(reader))[2]) for _ in range(3)]
        writer.close()
        return [sorted(got[0]), got[1], got[2]["status"]]

    health, job, status = await on_both(tmp_path, scenario)
    assert "status" in health and job == {"job_id": "job_id_1"} and status == "done"


async def test_a_crash_in_a_route_is_a_500_in_json_on_both_paths(tmp_path, monkeypatch):
    def crash(*args):
        raise RuntimeError("a bug")

    async def crash_later(*args):
        raise RuntimeError("a bug")

    for module in ("server.routes", "server.fastpath"):
        monkeypatch.setattr(f"{module}.results_at_once", crash)
        monkeypatch.setattr(f"{module}.submit", crash_later)

    async def scenario(server):
        return await exchanges(server, get("/api/get_results/1"), QUERY)

    replies = await on_both(tmp_path, scenario)
    assert [got[0][2] for got, _ in replies] == [b'{"status":"error","reason":"%s"}' % INTERNAL_ERROR.encode()] * 2


# ---------------------------------------------------------------------------------------------
# scan on its own


HOST = b"Host: x\r\n"


@pytest.mark.parametrize(
    "data, expected",
    [
        (get("/api/get_results/7"), ("GET", "7", None, True)),
        (get("/api/get_results/job_id_7?wait=2.5"), ("GET", "job_id_7", "2.5", True)),
        (get("/api/get_results/7", version=b"1.0", host=b""), ("GET", "7", None, False)),
        (post("/api/global_mean", b"{}"), ("POST", "global_mean", None, True)),
        (post("/api/global_mean", b"{}", headers=b"Connection: close\r\n"), ("POST", "global_mean", None, False)),
    ],
)
def test_scan_takes_whole_plain_hot_requests(data, expected):
    found = scan(data + (b"GET /next" if expected[-1] else b""), 0, 4096)
    assert isinstance(found, Hot) and found.end == len(data)
    assert (found.method, found.name, found.wait, found.keep_alive) == expected


@pytest.mark.parametrize(
    "data",
    [
        get("/api/health"),
        get("/api/get_results/7", headers=b"Content-Length: 2\r\n") + b"{}",
        get("/api/get_results/7?wait=1&x=2"),
        get("/api/get_results/a.b"),
        get("/api/get_results/7", host=b""),
        get("/api/get_results/7", headers=b"Expect: 100-continue\r\n"),
        get("/api/get_results/7", headers=b"Connection: keep-alive, foo\r\n"),
        post("/api/best5", b"x" * 5000),
        b"POST /api/best5 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS /api/best5 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_scan_leaves_other_whole_requests_to_aiohttp_with_their_length(data):
    assert scan(data + b"GET /next", 0, 4096) == len(data)


@pytest.mark.parametrize(
    "data",
    [
        get("/api/get_results/7")[:-2],  # the head is not all there
        b"",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/api/get_results/7 HTTP/1.1\r\nHost: x\r\n\r\n",
        *(get("/api/get_results/7", headers=headers) for headers in ODD_HEADERS),
        b"GET /api/get_results/7 HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"get /api/get_results/7 HTTP/1.1\r\nHost: x\r\n\r\n",
        get("/api/get_results/7", headers=b"Connection: close\r\n") + b"GET",  # aiohttp: 400 for it all
    ],
)
def test_scan_is_in_doubt_about_anything_else(data):
    assert scan(data, 0, 4096) is None


def test_scan_gives_where_a_request_whose_body_is_still_coming_ends():
    assert scan(QUERY[:-1], 0, 4096) == len(QUERY)


async def test_a_client_writing_head_and_body_apart_keeps_the_connection_fast(tmp_path):
    """Python's http.client (urllib, requests) sends a POST's head and body in two writes."""
    head = QUERY.index(b"\r\n\r\n") + 4

    async def scenario(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        got = []
        for data in (QUERY[:head], QUERY[head:], get("/api/get_results/1?wait=10"), QUERY[:head], QUERY[head:]):
            writer.write(data)
            await writer.drain()
            if not data.startswith(b"POST"):
                got.append(json.loads((await read_reply(reader))[2]))
        if server.app[CONFIG].http_fast_path:  # the connection still answers whole hot requests itself
            assert [handler._fast for handler in server.runner.server._connections] == [True]
        writer.close()
        return got

    got = await on_both(tmp_path, scenario)
    assert got[0] == {"job_id": "job_id_1"} and got[1]["status"] == "done" and got[2] == {"job_id": "job_id_2"}


def test_scan_starts_where_it_is_told():
    data = get("/api/get_results/1") + get("/api/get_results/2")
    first = scan(data, 0, 4096)
    assert isinstance(first, Hot)
    second = scan(data, first.end, 4096)
    assert isinstance(second, Hot) and second.name == "2" and second.end == len(data)
    assert re.fullmatch(r"/api/get_results/2", second.path)
