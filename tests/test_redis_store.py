"""`--store redis://...` (API.md, "Scaling out"): nodes sharing one Redis are one service.

Each test starts its own redis-server (tests/redisproc.py) and real `python -m server` nodes.
"""

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from redisproc import redis_server  # noqa: F401  (a fixture)
from test_frontends import assert_matches, every_query, frontend_pids, sample_rows, upload  # noqa: F401
from test_process import OBESITY, mixed_queries

pytestmark = pytest.mark.slow
TAKEOVER_TIMEOUT_S = 40
RECOVERY_TIMEOUT_S = 20


def node(servers, tmp_path, store, name, *more):
    return servers(tmp_path / name, workers=1, args=("--store", store.url, "--node", name, *more))


def job_number(job_id):
    return int(job_id.removeprefix("job_id_"))


def test_every_query_reads_the_same_from_either_node(servers, tmp_path, redis_server, sample_rows):  # noqa: F811
    alpha = node(servers, tmp_path, redis_server, "alpha")
    beta = node(servers, tmp_path, redis_server, "beta", "--frontends", "2")
    assert len(frontend_pids(beta)) == 2
    health = beta.get_json("/api/health")
    assert (health["node"], health["store"], health["status"]) == ("beta", redis_server.url, "ok")

    cases = every_query(sample_rows)
    posted = [(alpha if n % 2 else beta).submit(query, body) for n, (query, body, _) in enumerate(cases)]
    assert len(set(posted)) == len(posted)
    for job_id, (query, _, want) in zip(posted, cases, strict=True):
        first = alpha.result(job_id)
        reply = json.loads(first)
        assert reply["status"] == "done", (query, reply)
        assert_matches(reply["data"], want)
        for reader in (alpha, beta, beta, beta):
            assert reader.call("GET", f"/api/get_results/{job_id}") == (200, first), query
    listed = [{job_id: "done"} for job_id in sorted(posted, key=job_number)]
    assert alpha.get_json("/api/jobs")["data"] == listed
    assert beta.get_json("/api/jobs")["data"] == listed
    assert beta.get_json("/api/num_jobs") == {"num_jobs": 0}
    status, body = beta.call("GET", "/api/get_results/job_id_777")
    assert (status, json.loads(body)) == (404, {"status": "error", "reason": "Invalid job_id"})


def test_answers_from_a_nodes_reply_cache_are_saved_in_redis_for_the_other_node(servers, tmp_path, redis_server):  # noqa: F811
    """A cache hit is saved from the event loop with the asyncio client (no thread): the other
    node reads each such job from Redis with the computed job's reply. A failed save would be
    hidden (the hits go through the pool instead, with the same replies): the log tells."""
    alpha, beta = (node(servers, tmp_path, redis_server, name) for name in ("alpha", "beta"))
    computed = alpha.submit("states_mean", {"question": OBESITY})
    reply = alpha.result(computed)
    assert json.loads(reply)["status"] == "done"
    hits = [alpha.submit("states_mean", {"question": OBESITY}) for _ in range(5)]
    for job_id in hits:
        assert beta.result(job_id) == reply, job_id
    assert alpha.get_json("/api/health")["cache"]["hits"] >= len(hits)
    assert beta.get_json("/api/jobs")["data"] == [{job_id: "done"} for job_id in [computed, *hits]]
    assert [line for line in alpha.error_lines() if "lestats.answers" in line] == []


def test_ids_are_unique_under_concurrent_load_on_two_nodes(servers, tmp_path, redis_server):  # noqa: F811
    nodes = [node(servers, tmp_path, redis_server, name) for name in ("alpha", "beta")]
    issued = {}

    def load(server):
        issued[server.port] = server.submit_all(mixed_queries(300))

    threads = [threading.Thread(target=load, args=(server,)) for server in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    ids = issued[nodes[0].port] + issued[nodes[1].port]
    assert len(ids) == 600 and len(set(ids)) == 600, "an id was handed out twice"
    for job_id in ids:
        assert json.loads(nodes[1].result(job_id))["status"] == "done", job_id
    assert len(nodes[0].get_json("/api/jobs")["data"]) == 600


def test_a_node_killed_mid_load_strands_none_of_its_jobs(servers, tmp_path, redis_server):  # noqa: F811
    doomed = node(servers, tmp_path, redis_server, "doomed")
    survivor = node(servers, tmp_path, redis_server, "survivor")
    # Freeze the doomed node's workers so that its jobs are surely still running when it dies.
    workers = doomed.get_json("/api/health")["workers"]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    ids = doomed.submit_all(mixed_queries(120))
    assert doomed.get_json("/api/num_jobs")["num_jobs"] > 0
    doomed.kill_group()

    deadline = time.monotonic() + TAKEOVER_TIMEOUT_S
    for job_id in ids:
        reply = json.loads(survivor.result(job_id, timeout=max(1, deadline - time.monotonic())))
        assert reply["status"] == "done", (job_id, reply)
    assert survivor.get_json("/api/num_jobs") == {"num_jobs": 0}
    assert all(status == "done" for entry in survivor.get_json("/api/jobs")["data"] for status in entry.values())


def test_a_redis_restart_keeps_results_and_ids_continue_above(servers, tmp_path, redis_server):  # noqa: F811
    first = node(servers, tmp_path, redis_server, "alpha")
    ids = [first.submit(query, body) for query, body in mixed_queries(20)]
    results = {job_id: first.result(job_id) for job_id in ids}
    uploaded, _ = upload(first, tmp_path)
    time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk
    # A Redis that loses its last second of writes may come back with an older counter, and
    # without the last results.
    client = redis_server.client()
    client.set("lestats:next", 3)
    client.set("lestats:dsseq", 0)  # the uploads' counter, lost the same way
    lost = job_number(ids[-1])
    client.delete(f"lestats:r:{lost}")
    client.hdel("lestats:status", lost)
    redis_server.restart()

    second = node(servers, tmp_path, redis_server, "beta")
    for job_id, body in results.items():
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while second.call("GET", f"/api/get_results/{job_id}") != (200, body):  # the lost one is saved again
            assert time.monotonic() < deadline, f"{job_id} is lost"
            time.sleep(0.1)
    new_id = second.submit("global_mean", {"question": OBESITY})
    assert job_number(new_id) > max(job_number(job_id) for job_id in ids)
    assert upload(second, tmp_path)[0] != uploaded, "an upload id is never given again"
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while (status := first.call("POST", "/api/global_mean", {"question": OBESITY}))[0] != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert job_number(json.loads(status[1])["job_id"]) > job_number(new_id)


def test_after_a_redis_restart_no_read_fails_on_a_connection_opened_before_it(servers, tmp_path, redis_server):  # noqa: F811
    """The client's pool keeps idle connections to the Redis that is gone: each failed its next
    call once, so reads of old results got 503 "Connection closed by server" after the node's
    health said "ok" again (5-9 of 100 reads per restart, before the fix)."""
    alpha, beta = (node(servers, tmp_path, redis_server, name) for name in ("alpha", "beta"))
    ids = [alpha.submit(query, body) for query, body in mixed_queries(25)]
    results = {job_id: alpha.result(job_id) for job_id in ids}

    def read(job_id):
        return beta.call("GET", f"/api/get_results/{job_id}")

    for _ in range(3):
        with ThreadPoolExecutor(12) as readers:  # beta's pool grows to many connections
            assert list(readers.map(read, ids * 4)) == [(200, results[job_id]) for job_id in ids * 4]
        redis_server.restart()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while beta.get_json("/api/health")["status"] != "ok":
            assert time.monotonic() < deadline, "beta did not recover"
            time.sleep(0.1)
        assert [read(job_id) for job_id in ids] == [(200, results[job_id]) for job_id in ids]
        with ThreadPoolExecutor(12) as readers:
            assert list(readers.map(read, ids)) == [(200, results[job_id]) for job_id in ids]


def test_while_redis_is_down_queries_get_503_and_health_says_why_then_it_recovers(
    servers,
    tmp_path,
    redis_server,  # noqa: F811
):
    server = node(servers, tmp_path, redis_server, "alpha")
    held = server.submit("global_mean", {"question": OBESITY})
    held_reply = server.result(held)
    dataset, _ = upload(server, tmp_path)
    redis_server.stop()

    for method, path, body in (
        ("DELETE", f"/api/datasets/{dataset}", None),
        ("POST", "/api/datasets?name=small.csv", (tmp_path / "small.csv").read_bytes()),
    ):
        status, headers, reply = server.fetch(method, path, body)
        assert (status, headers["Retry-After"]) == (503, "1"), (method, path, reply)
        assert json.loads(reply)["status"] == "error" and "Redis" in json.loads(reply)["reason"]

    for _ in range(3):
        started = time.monotonic()
        status, body = server.call("POST", "/api/states_mean", {"question": OBESITY}, timeout=10)
        assert status == 503, body
        assert json.loads(body)["status"] == "error" and "Redis" in json.loads(body)["reason"]
        assert time.monotonic() - started < 5, "a query must not hang while the store is down"
    health = server.get_json("/api/health")
    assert health["status"] == "degraded"
    assert any("Redis" in problem for problem in health["problems"]), health["problems"]
    assert server.call("GET", f"/api/get_results/{held}") == (200, held_reply), "held replies are still served"

    redis_server.start()
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while (status := server.call("POST", "/api/states_mean", {"question": OBESITY}))[0] != 200:
        assert time.monotonic() < deadline, f"no recovery: {status}"
        time.sleep(0.2)
    assert json.loads(server.result(json.loads(status[1])["job_id"]))["status"] == "done"
    assert server.get_json("/api/health")["status"] == "ok"
    assert server.call("DELETE", f"/api/datasets/{dataset}")[0] == 200, "kept while Redis was down"


def test_an_upload_reaches_every_node_even_one_started_later(servers, tmp_path, redis_server):  # noqa: F811
    alpha = node(servers, tmp_path, redis_server, "alpha")
    beta = node(servers, tmp_path, redis_server, "beta")
    dataset, want = upload(alpha, tmp_path)
    assert dataset in [entry["dataset"] for entry in beta.get_json("/api/datasets")["datasets"]], "at once"
    job_id = beta.submit("states_mean", {"question": OBESITY, "dataset": dataset})
    assert_matches(json.loads(beta.result(job_id))["data"], want)

    later = node(servers, tmp_path, redis_server, "gamma")
    assert dataset in [entry["dataset"] for entry in later.get_json("/api/datasets")["datasets"]]
    job_id = later.submit("states_mean", {"question": OBESITY, "dataset": dataset})
    assert_matches(json.loads(alpha.result(job_id))["data"], want)

    fresh, _ = upload(alpha, tmp_path)
    assert beta.call("DELETE", f"/api/datasets/{fresh}")[0] == 200, "an upload made on another node a moment ago"
    assert beta.call("DELETE", f"/api/datasets/{dataset}")[0] == 200
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while (status := alpha.call("POST", "/api/states_mean", {"question": OBESITY, "dataset": dataset}))[0] != 400:
        assert time.monotonic() < deadline, f"the removed data set is still served: {status}"
        time.sleep(0.2)


def test_a_redis_that_comes_back_empty_gives_no_upload_id_again(servers, tmp_path, redis_server):  # noqa: F811
    alpha = node(servers, tmp_path, redis_server, "alpha")
    beta = node(servers, tmp_path, redis_server, "beta")
    dataset, _ = upload(alpha, tmp_path)
    assert dataset in [entry["dataset"] for entry in beta.get_json("/api/datasets")["datasets"]]
    redis_server.client().flushall()  # its data lost: persistence off, or its directory gone
    assert upload(beta, tmp_path)[0] != dataset, "beta still serves the first file under that id"
