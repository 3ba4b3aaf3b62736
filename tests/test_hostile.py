"""Hostile and careless clients against a real `python -m server` process (issue 9): never a wrong
answer, never a stall, every error JSON with the right 4xx.

Each class of problem the issue names has its tests here: data-set ids and segments, compressed
bodies, concurrent uploads, removal with queued jobs, shutting down, huge catalogs, admin routes
from web pages, errors from every layer, slow clients and their logging.
"""

import asyncio
import csv
import gzip
import io
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from reference import CSV_COLUMNS, load_rows, reference

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
OBESITY = "Percent of adults aged 18 years and older who have obesity"
REL_TOL = 1e-9


def fetch(server, method, path, body=None, headers=None, timeout=20):
    """(status, headers, parsed JSON reply); `body` is JSON-encoded unless it is bytes."""
    status, reply_headers, raw = server.fetch(method, path, body, headers, timeout)
    if method == "HEAD":
        return status, reply_headers, None
    assert reply_headers.get("Content-Type", "").startswith("application/json"), (status, reply_headers, raw[:200])
    return status, reply_headers, json.loads(raw)


def assert_error(reply, status, expected_status):
    assert status == expected_status, (status, reply)
    assert reply["status"] == "error" and isinstance(reply["reason"], str) and reply["reason"], reply
    assert len(reply["reason"]) < 1200, len(reply["reason"])


def raw_exchange(server, data, read_timeout=30):
    """Send raw bytes; (the reply: until the server closes or one whole reply came, seconds taken)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            head, found, body = reply.partition(b"\r\n\r\n")
            length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            if found and length and len(body) >= int(length[0].split(b":")[1]):
                break
    return reply, time.monotonic() - started


def parse_raw(reply):
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def csv_file(rows):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return text.getvalue().encode()


def upload(server, content, headers=None):
    return fetch(server, "POST", "/api/datasets", content, {"Content-Type": "text/csv", **(headers or {})})


def rows_with(value_of):
    """A small file: every state of a few questions, its values from `value_of(n)`."""
    states = ["Alabama", "Guam", "Ohio", "Texas", "Utah", "Iowa"]
    return [
        [2015, 2015, state, question, f"{value_of(n):.3f}", "Sex", segment]
        for n, (question, state, segment) in enumerate(
            (question, state, segment)
            for question in (OBESITY, "Q two")
            for state in states
            for segment in ("Male", "Female")
        )
    ]


def result(server, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status, _, reply = fetch(server, "GET", f"/api/get_results/{job_id}?wait=5")
        assert status == 200, reply
        if reply["status"] != "running":
            return reply
        assert time.monotonic() < deadline, f"{job_id} still running after {timeout} s"


def submit(server, query, body):
    status, _, reply = fetch(server, "POST", f"/api/{query}", body)
    assert status == 200, reply
    return reply["job_id"]


def load_csv_rows(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    return load_rows(path)


# ---------------------------------------------------------------------------------------------
# 1. Data-set ids are never reused; workers answer from the segment the server means


@pytest.mark.slow
def test_upload_delete_upload_never_answers_from_the_old_file_and_ids_survive_restarts(servers, tmp_path):
    state = tmp_path / "state"
    server = servers(state, workers=2)
    first, second = csv_file(rows_with(lambda n: 10 + n)), csv_file(rows_with(lambda n: 90 - 2 * n))
    status, _, reply = upload(server, first)
    assert (status, reply["dataset"]) == (200, "upload1"), reply
    # Every worker attaches to upload1 while answering these.
    for job_id in [submit(server, "states_mean", {"question": OBESITY, "dataset": "upload1"}) for _ in range(20)]:
        assert result(server, job_id)["status"] == "done"
    assert fetch(server, "DELETE", "/api/datasets/upload1")[0] == 200
    status, _, reply = upload(server, second)
    assert (status, reply["dataset"]) == (200, "upload2"), reply
    status, _, reply = fetch(server, "POST", "/api/states_mean", {"question": OBESITY, "dataset": "upload1"})
    assert_error(reply, status, 400)

    rows = load_csv_rows(tmp_path, second, "second.csv")
    jobs = [
        submit(server, "state_mean", {"question": OBESITY, "state": "Ohio", "dataset": "upload2"}) for _ in range(40)
    ]
    want = reference(rows, "state_mean", OBESITY, "Ohio")
    for job_id in jobs:
        reply = result(server, job_id)
        assert reply["status"] == "done", reply
        assert reply["data"] == pytest.approx(want, rel=REL_TOL)

    assert fetch(server, "DELETE", "/api/datasets/upload2")[0] == 200
    server.kill_group()  # a crash: the index was on disk before each reply
    server = servers(state, workers=1)
    status, _, reply = upload(server, first)
    assert (status, reply["dataset"]) == (200, "upload3"), "an id was given again after a restart"


# ---------------------------------------------------------------------------------------------
# 3. Compressed bodies are refused, not inflated; refused bodies close the connection


def gzip_bomb(size=64 * 2**20):
    return gzip.compress(b"{" + b" " * size, compresslevel=9)


def test_compressed_bodies_are_refused_with_415_and_the_connection_closed(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1)
    bomb = gzip_bomb()
    for path in ("/api/states_mean", "/api/datasets"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        ).encode()
        reply, _ = raw_exchange(server, head + bomb)  # returns only once the server closed
        status, body = parse_raw(reply)
        assert_error(body, status, 415)
    status, _, reply = fetch(server, "POST", "/api/states_mean", {"question": OBESITY})
    assert status == 200, reply
    health = fetch(server, "GET", "/api/health")[2]
    assert health["status"] == "ok"


@pytest.mark.slow
def test_a_refused_body_is_not_read_to_its_end(servers, tmp_path):
    """413 on a query and 403 on an admin route: the server closes the connection instead of
    reading a body the client keeps sending."""
    server = servers(tmp_path / "state", workers=1, args=["--admin-token", "t0k"])
    for path, expected in (("/api/states_mean", 413), ("/api/datasets", 403)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
                f"Content-Length: {2**40}\r\n\r\n".encode()
            )
            reply, closed = b"", False
            deadline = time.monotonic() + 30
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"x" * 65536)
                except OSError:
                    closed = True
                try:
                    chunk = sock.recv(65536)
                    if not chunk:
                        closed = True
                    reply += chunk
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed, f"{path}: the server kept reading an endless refused body"
            if reply:
                status, body = parse_raw(reply)
                assert_error(body, status, expected)


# ---------------------------------------------------------------------------------------------
# 4. Concurrent uploads: all accepted survive a restart, refused ones leave no ghost


@pytest.mark.slow
def test_thirty_concurrent_uploads_all_survive_a_restart(servers, tmp_path):
    state = tmp_path / "state"
    server = servers(state, workers=1)
    good = {n: csv_file(rows_with(lambda k, n=n: n + k / 100)) for n in range(30) if n % 5}
    bad = {n: b"LocationDesc,Question\nOhio,Q\n" for n in range(30) if not n % 5}
    files = {**good, **bad}
    replies = {}

    def send(n):
        replies[n] = upload(server, files[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    accepted = {}
    for n, (status, _, reply) in replies.items():
        if n in good:
            assert status == 200, (n, reply)
            accepted[reply["dataset"]] = n
        else:
            assert_error(reply, status, 400)
    assert len(accepted) == len(good)
    server.kill_group()  # a crash: every accepted upload was on disk before its reply
    server = servers(state, workers=1)
    listed = {item["dataset"]: item for item in fetch(server, "GET", "/api/datasets")[2]["datasets"]}
    assert set(listed) == {"default", *accepted}, "an accepted upload was lost, or a refused one came back"
    name = max(accepted, key=lambda name: int(name.removeprefix("upload")))
    rows = load_csv_rows(tmp_path, good[accepted[name]], "check.csv")
    reply = result(server, submit(server, "global_mean", {"question": OBESITY, "dataset": name}))
    assert reply["data"] == pytest.approx(reference(rows, "global_mean", OBESITY), rel=REL_TOL)


# ---------------------------------------------------------------------------------------------
# 5. Removing a data set ends only its own queued jobs; uploads are refused while draining


@pytest.mark.slow
def test_deleting_a_data_set_with_many_queued_jobs_touches_no_other_data_set(servers, tmp_path):
    server = servers(tmp_path / "state", workers=2, args=["--cache-entries", "0"])
    status, _, reply = upload(server, csv_file(rows_with(lambda n: 5 + n)))
    assert status == 200, reply
    name = reply["dataset"]
    sample = load_rows(SAMPLE)
    want = reference(sample, "state_mean", OBESITY, "Ohio")

    async def flood():
        async with aiohttp.ClientSession(server.url) as session:

            async def post(body):
                async with session.post("/api/state_mean", json=body) as response:
                    reply = await response.json()
                    if response.status == 400 and body["dataset"] == name:  # posted after the removal
                        assert reply["reason"] == f"unknown data set: '{name}'", reply
                        return None, name
                    assert response.status == 200, reply
                    return reply["job_id"], body["dataset"]

            bodies = [{"question": OBESITY, "state": "Ohio", "dataset": name}] * 1000
            bodies += [{"question": OBESITY, "state": "Ohio", "dataset": "default"}] * 300
            mixed = [body for pair in zip(bodies[:300], bodies[1000:], strict=True) for body in pair] + bodies[300:1000]
            # The first 200 are surely queued when the removal comes (the workers are stopped);
            # the rest race with it, so some are posted after it.
            queued = await asyncio.gather(*(post(body) for body in mixed[:200]))
            posting = asyncio.gather(*(post(body) for body in mixed[200:]))
            await asyncio.sleep(0.05)
            async with session.delete(f"/api/datasets/{name}") as response:
                assert response.status == 200, await response.text()
            return queued + await posting

    workers = server.get_json("/api/health")["workers"]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        jobs = asyncio.run(flood())
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    removed = 0
    for job_id, dataset in jobs:
        if job_id is None:
            continue
        reply = result(server, job_id)
        if dataset == "default":
            assert reply["status"] == "done", reply
            assert reply["data"] == pytest.approx(want, rel=REL_TOL)
        elif reply["status"] == "error":
            assert reply["reason"] == f"the data set '{name}' was removed", reply
            removed += 1
        else:
            assert reply["status"] == "done", reply
    assert removed, "no job of the removed data set was still queued; the test did not test"


def test_uploads_are_refused_while_shutting_down(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1)
    assert fetch(server, "GET", "/api/graceful_shutdown")[2] == {"status": "done"}
    status, _, reply = upload(server, csv_file(rows_with(lambda n: n)))
    assert (status, reply) == (503, {"status": "error", "reason": "shutting down"})
    assert [item["dataset"] for item in fetch(server, "GET", "/api/datasets")[2]["datasets"]] == ["default"]


# ---------------------------------------------------------------------------------------------
# 6. Huge catalogs: a bounded OpenAPI document, catalogs not resent with every batch


@pytest.mark.slow
def test_a_wide_upload_keeps_openapi_small_and_batches_cheap(servers, tmp_path):
    server = servers(tmp_path / "state", workers=2)
    questions = [f"Question number {n:06d} with some words to make it long" for n in range(100_000)]
    rows = [[2015, 2015, "Ohio", question, "5.0", "Total", "Total"] for question in questions]
    status, _, reply = upload(server, csv_file(rows))
    assert status == 200, reply
    document_bytes = urllib.request.urlopen(f"{server.url}/api/openapi.json", timeout=30).read()
    assert len(document_bytes) < 200_000, len(document_bytes)
    jobs = [
        submit(server, "global_mean", {"question": questions[n * 250], "dataset": reply["dataset"]}) for n in range(400)
    ]
    for job_id in jobs:
        assert result(server, job_id)["data"] == {"global_mean": 5.0}


# ---------------------------------------------------------------------------------------------
# 7. Admin routes reachable from web pages


def test_head_never_runs_an_admin_route(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1)
    status, headers, _ = fetch(server, "HEAD", "/api/graceful_shutdown")
    assert status == 405 and headers["Allow"] == "GET"
    assert fetch(server, "GET", "/api/health")[2]["draining"] is False
    assert fetch(server, "POST", "/api/global_mean", {"question": OBESITY})[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Host": "evil.example"},
        {"Host": "rebound.example:5000"},
    ],
    ids=["origin", "null-origin", "cross-site", "same-site", "host", "host-port"],
)
def test_cross_site_and_rebound_requests_cannot_use_admin_routes(servers, tmp_path, headers):
    server = servers(tmp_path / "state", workers=1)
    status, _, reply = upload(server, csv_file(rows_with(lambda n: n)), headers)
    assert_error(reply, status, 403)
    status, _, reply = fetch(server, "GET", "/api/graceful_shutdown", headers=headers)
    assert_error(reply, status, 403)
    assert [item["dataset"] for item in fetch(server, "GET", "/api/datasets")[2]["datasets"]] == ["default"]
    assert fetch(server, "GET", "/api/health")[2]["draining"] is False
    # The server's own page (same origin) still can.
    same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    status, _, reply = upload(server, csv_file(rows_with(lambda n: n)), same)
    assert status == 200, reply


def test_an_admin_token_in_a_query_string_is_never_logged(servers, tmp_path):
    token = "Zq8secretTOKENvalue"
    server = servers(tmp_path / "state", workers=1, args=["--admin-token", token])
    for path in (
        f"/api/graceful_shutdown?token={token}",
        f"/api/graceful_shutdown?access_token={token}&x=1",
        f"/api/num_jobs?admin={token}",
    ):
        fetch(server, "GET", path)
    assert fetch(server, "GET", "/api/health")[2]["draining"] is False
    log = logged(server, "exit GET /api/health")
    assert "exit GET /api/num_jobs" in log and "exit GET /api/graceful_shutdown 403" in log
    assert token not in log and token not in server.output()


# ---------------------------------------------------------------------------------------------
# 8. Every error JSON, at every layer, with the right 4xx


def test_errors_from_every_layer_are_json_with_the_right_status(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1)
    cases = [
        (f"GET /api/get_results/{'9' * 5000} HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (f"GET /api/get_results/job_id_{'7' * 40} HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (f"GET /api/{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("GET /api/num_jobs HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-H{n}: 1\r\n" for n in range(200)) + "\r\n", 431),
        (f"GET /api/num_jobs HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 9000}\r\n\r\n", 431),
        ("FO\x01O /api/num_jobs HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /api/num_jobs HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        ("GET /static/no-such-file.js HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("GET /static/../server/app.py HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("GET /api/get_results/1?wait=1_0 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /api/get_results/1?wait=%D9%A1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /api/get_results/1?wait=nan HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /api/get_results/1?wait=1e1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("POST /api/states_mean HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (
            "POST /api/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data\r\n"
            "Content-Length: 3\r\n\r\nabc",
            400,
        ),
        ("POST /api/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 400),
    ]
    for request, expected in cases:
        reply, _ = raw_exchange(server, request.encode("latin-1"))
        status, body = parse_raw(reply)
        assert_error(body, status, expected)


def test_a_400_quotes_only_an_excerpt_of_a_huge_input(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1)
    huge = "Q" * 1_000_000
    for body in ({"question": huge}, {"question": OBESITY, "state": huge}, {"question": OBESITY, "dataset": [huge]}):
        status, _, reply = fetch(server, "POST", "/api/state_mean", body)
        assert_error(reply, status, 400)
        assert len(reply["reason"]) < 400, len(reply["reason"])


# ---------------------------------------------------------------------------------------------
# 9. Slow clients are timed out; the open-file limit is raised; bursts are logged once


def test_slow_heads_and_bodies_are_timed_out_and_logged_once(servers, tmp_path):
    server = servers(tmp_path / "state", workers=1, args=["--header-timeout", "1", "--body-timeout", "1"])
    half_head = b"GET /api/num_jobs HTTP/1.1\r\nHost: x\r\n"
    half_body = b'POST /api/states_mean HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"question'
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(half_head)
        sockets.append(sock)
    try:
        # The server still answers others while they wait.
        assert fetch(server, "GET", "/api/num_jobs")[0] == 200
        for sock in sockets:
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            status, body = parse_raw(reply)
            assert_error(body, status, 408)
    finally:
        for sock in sockets:
            sock.close()
    reply, taken = raw_exchange(server, half_body)
    status, body = parse_raw(reply)
    assert_error(body, status, 408)
    assert taken < 20
    # A whole request, its reply, then half of the next request on the same connection.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /api/num_jobs HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(half_head)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        status, body = parse_raw(reply)
        assert_error(body, status, 408)
    soft, hard = limits_of(server.pid)
    assert soft == hard or soft >= 65536, (soft, hard)
    log = logged(server, "slower than")
    assert log.count("did not arrive within") == 1, "every slow client logged a line of its own"


def logged(server, text, timeout=20):
    """The server's log once it holds `text` (log lines are written by a thread, in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.log_path.read_text() if server.log_path.exists() else ""
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s"
        time.sleep(0.05)


def limits_of(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return (int(soft) if soft != "unlimited" else float("inf")), (
                int(hard) if hard != "unlimited" else float("inf")
            )
    raise AssertionError("no open-file limit in /proc")
