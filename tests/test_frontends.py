"""`--frontends N` (API.md, "Scaling out"): several front-end processes on one port, one service.

Every call of `Server.call` opens a new connection, which the kernel hands to one of the
front-ends (SO_REUSEPORT), so reading each job several times reads it through every front-end.
"""

import json
import math
import os
import signal
import time

import pytest
from reference import QUERY_NAMES, load_rows, reference
from serverproc import PROJECT_ROOT, segments_of
from test_process import OBESITY, SHUTTING_DOWN, mixed_queries

SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
STATE_QUERIES = {"state_mean", "state_diff_from_mean", "state_mean_by_category"}
READS_PER_JOB = 8
REL_TOL = 1e-9

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_rows():
    return load_rows(SAMPLE)


def assert_matches(got, want):
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, dict):
            assert_matches(got[key], value)
        else:
            assert math.isclose(got[key], value, rel_tol=REL_TOL), (key, got[key], value)


def frontend_pids(server, calls=30):
    """The front-end pids that answered `calls` health requests, each on a new connection."""
    return {server.get_json("/api/health")["frontend"] for _ in range(calls)}


def every_query(rows):
    """(query, body, expected data) for each of the nine queries."""
    cases = []
    for query in QUERY_NAMES:
        state = "Ohio" if query in STATE_QUERIES else None
        body = {"question": OBESITY, **({"state": state} if state else {})}
        cases.append((query, body, reference(rows, query, OBESITY, state)))
    return cases


def test_every_query_reads_the_same_from_every_front_end(servers, tmp_path, sample_rows):
    server = servers(tmp_path / "state", args=("--frontends", "2", "--node", "alpha"))
    pids = frontend_pids(server)
    assert len(pids) == 2, f"two front-ends should share the port, saw {pids}"
    health = server.get_json("/api/health")
    assert (health["node"], health["store"]) == ("alpha", "embedded")

    cases = every_query(sample_rows)
    ids = [server.submit(query, body) for query, body, _ in cases]
    assert len(set(ids)) == len(ids)
    for job_id, (query, _, want) in zip(ids, cases, strict=True):
        first = server.result(job_id)
        for _ in range(READS_PER_JOB):
            status, body = server.call("GET", f"/api/get_results/{job_id}")
            assert (status, body) == (200, first), f"{query}: the front-ends disagree"
        reply = json.loads(first)
        assert reply["status"] == "done", reply
        assert_matches(reply["data"], want)
    status, body = server.call("GET", "/api/get_results/job_id_9999")
    assert (status, json.loads(body)) == (404, {"status": "error", "reason": "Invalid job_id"})


def test_a_query_one_front_end_computed_is_answered_by_the_other_without_the_pool(servers, tmp_path):
    """Each front-end has its own reply cache; the shared store tells the other what was answered."""
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    body = {"question": OBESITY}
    want = server.result(server.submit("global_mean", body))
    assert json.loads(want)["status"] == "done"
    for job_id in [server.submit("global_mean", body) for _ in range(20)]:  # a new connection each
        assert server.result(job_id) == want
    caches = {}
    for _ in range(60):
        health = server.get_json("/api/health")
        caches[health["frontend"]] = health["cache"]
        if len(caches) == 2:
            break
    assert len(caches) == 2, "both front-ends should answer"
    assert sum(cache["misses"] - cache["from_store"] for cache in caches.values()) == 1, caches
    assert sum(cache["from_store"] for cache in caches.values()) == 1, caches


def test_ids_are_dense_and_unique_and_jobs_speaks_for_every_front_end(servers, tmp_path):
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    ids = server.submit_all(mixed_queries(300))
    numbers = sorted(int(job_id.removeprefix("job_id_")) for job_id in ids)
    assert numbers == list(range(1, 301)), "one counter for every front-end: no id twice, none skipped"
    for job_id in ids:
        assert json.loads(server.result(job_id))["status"] == "done", job_id
    for _ in range(6):  # every front-end lists every job
        assert server.get_json("/api/jobs")["data"] == [{f"job_id_{n}": "done"} for n in range(1, 301)]
        assert server.get_json("/api/num_jobs") == {"num_jobs": 0}


def test_graceful_shutdown_and_sigterm_drain_every_front_end_and_a_restart_keeps_all(servers, tmp_path):
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    pids = frontend_pids(server)
    ids = server.submit_all(mixed_queries(200))

    assert server.get_json("/api/graceful_shutdown") in ({"status": "running"}, {"status": "done"})
    for _ in range(8):  # whichever front-end the connection reaches refuses
        status, body = server.call("POST", "/api/states_mean", {"question": OBESITY})
        assert (status, json.loads(body)) == (503, SHUTTING_DOWN)
    results = {job_id: server.result(job_id) for job_id in ids}
    assert all(json.loads(body)["status"] == "done" for body in results.values())
    assert server.get_json("/api/graceful_shutdown") == {"status": "done"}

    assert server.stop(signal.SIGTERM) == 0, server.output()
    server.assert_released()
    for pid in pids:
        assert segments_of(pid) == [], f"front-end {pid} left shared memory"

    again = servers(tmp_path / "state", args=("--frontends", "2"))
    for job_id, body in results.items():
        assert again.result(job_id, timeout=0) == body, job_id
    assert again.submit("global_mean", {"question": OBESITY}) == "job_id_201"


UPLOAD_ROWS = [
    ("Ohio", OBESITY, "30.5", "Total", "Total"),
    ("Ohio", OBESITY, "33.5", "Age (years)", "18 - 24"),
    ("Utah", OBESITY, "25.0", "Total", "Total"),
    ("Utah", OBESITY, "", "Total", "Total"),
]


def upload(server, tmp_path):
    """Upload a small CSV (as a text/csv body); its id and the reference's states_mean of it."""
    path = tmp_path / "small.csv"
    lines = ["LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1"]
    lines += [",".join(f'"{field}"' for field in row) for row in UPLOAD_ROWS]
    path.write_text("\n".join(lines) + "\n")
    status, body = server.call("POST", "/api/datasets?name=small.csv", path.read_bytes())
    assert status == 200, body
    return json.loads(body)["dataset"], reference(load_rows(path), "states_mean", OBESITY)


def test_an_upload_to_one_front_end_is_queried_through_every_front_end(servers, tmp_path):
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    dataset, want = upload(server, tmp_path)
    for _ in range(8):  # each POST on a new connection, whichever front-end it reaches
        job_id = server.submit("states_mean", {"question": OBESITY, "dataset": dataset})
        assert_matches(json.loads(server.result(job_id))["data"], want)


@pytest.mark.parametrize(("first_frontends", "then_frontends"), [("1", "2"), ("2", "2"), ("2", "1")])
def test_upload_ids_are_never_given_again_after_a_restart(servers, tmp_path, first_frontends, then_frontends):
    """API.md: data-set ids are never reused, not even across restarts; either mode's state dir starts the other."""
    state = tmp_path / "state"
    server = servers(state, args=("--frontends", first_frontends))
    kept, _ = upload(server, tmp_path)
    removed, _ = upload(server, tmp_path)
    refused = server.call("POST", "/api/datasets?name=bad.csv", b"LocationDesc,Question\nOhio,Q\n")
    assert refused[0] == 400, refused  # it used up the id after `removed`, never to be given again
    for _ in range(6):  # every front-end lists it at once, not at its next look in the store
        assert removed in {entry["dataset"] for entry in server.get_json("/api/datasets")["datasets"]}
    assert server.call("DELETE", f"/api/datasets/{removed}")[0] == 200, "whichever front-end it reaches"
    assert server.stop() == 0
    server = servers(state, args=("--frontends", then_frontends))
    assert kept in {entry["dataset"] for entry in server.get_json("/api/datasets")["datasets"]}
    again, _ = upload(server, tmp_path)
    assert int(again.removeprefix("upload")) > int(removed.removeprefix("upload")) + 1


def test_a_killed_front_end_is_started_again_and_its_jobs_end_done(servers, tmp_path):
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    deadline = time.monotonic() + 30
    while True:  # the victim's own health reply names its workers
        health = server.get_json("/api/health")
        if health["frontend"] == max(frontend_pids(server)):
            break
        assert time.monotonic() < deadline
    victim, workers = health["frontend"], health["workers"]
    for pid in workers:  # its jobs stay running until it dies
        os.kill(pid, signal.SIGSTOP)
    ids = [server.submit(query, body) for query, body in mixed_queries(40)]

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    for job_id in ids:
        while True:  # connections the kernel had queued on the dead front-end's socket are reset
            try:
                reply = json.loads(server.result(job_id, timeout=max(1, deadline - time.monotonic())))
                break
            except OSError:
                assert time.monotonic() < deadline, f"{job_id}: no answer"
                time.sleep(0.1)
        assert reply["status"] == "done", (job_id, reply)
    assert victim not in frontend_pids(server)
    assert len(frontend_pids(server)) == 2, "the dead front-end was replaced"


def settled_result(server, job_id, deadline):
    """The job's reply once done; 503 with Retry-After (the store restarting) is waited out."""
    while True:
        status, headers, body = server.fetch("GET", f"/api/get_results/{job_id}")
        if status == 200 and json.loads(body) != {"status": "running"}:
            return body
        if status != 200:
            assert (status, headers["Retry-After"]) == (503, "1"), (job_id, status, body)
            assert json.loads(body)["status"] == "error"
        assert time.monotonic() < deadline, f"{job_id}: {status} {body!r}"
        time.sleep(0.05)


def test_an_index_damaged_before_a_manager_restart_leaves_the_loaded_uploads_served(servers, tmp_path):
    """The new manager cannot read the uploads' index: the front-ends go on with the data sets
    they hold (no 500 on the data-set routes or on a query); changing the uploads gets 503 with
    the reason (the server's fault, not the request's), never a 400."""
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    dataset, want = upload(server, tmp_path)
    deadline = time.monotonic() + 60

    def listed():
        return [item["dataset"] for item in server.get_json("/api/datasets")["datasets"]]

    while not all(dataset in listed() for _ in range(10)):  # both front-ends hold it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    index = tmp_path / "state" / "datasets" / "index.json"
    index.write_bytes(b'{"next": ')
    old = server.get_json("/api/health")["ledger"]["pid"]
    os.kill(old, signal.SIGKILL)
    while any(server.get_json("/api/health")["ledger"]["pid"] in (old, None) for _ in range(10)):
        assert time.monotonic() < deadline, "the manager was not started again"
        time.sleep(0.1)

    for _ in range(6):  # each on a new connection: either front-end
        assert dataset in listed()
        job_id = server.submit("states_mean", {"question": OBESITY, "dataset": dataset})
        assert_matches(json.loads(settled_result(server, job_id, deadline))["data"], want)
        status, body = server.call("POST", "/api/states_mean", {"question": OBESITY, "dataset": "upload999"})
        assert status == 400 and "upload999" in json.loads(body)["reason"], body
    for method, path, body in (
        ("POST", "/api/datasets?name=small.csv", (tmp_path / "small.csv").read_bytes()),
        ("DELETE", f"/api/datasets/{dataset}", None),
    ):
        status, reply = server.call(method, path, body)
        assert status == 503 and "index.json" in json.loads(reply)["reason"], (method, reply)
    assert index.read_bytes() == b'{"next": ', "left as it was, for a person to mend"
    while "cannot read the uploads' list" not in server.log_path.read_text():  # the duty says why
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert server.stop() == 0, server.output()
    assert "in the job store's duty" not in server.log_path.read_text(), "not a crash of the duty"


def test_a_killed_shared_manager_is_started_again_and_nothing_is_lost(servers, tmp_path):
    server = servers(tmp_path / "state", args=("--frontends", "2"))
    before = {job_id: server.result(job_id) for job_id in server.submit_all(mixed_queries(30))}
    healths = {}
    deadline = time.monotonic() + 30
    while len(healths) < 2:  # each front-end's own reply names its workers
        health = server.get_json("/api/health")
        healths[health["frontend"]] = health
        assert time.monotonic() < deadline
    workers = [pid for health in healths.values() for pid in health["workers"]]
    old = health["ledger"]["pid"]
    for pid in workers:  # jobs stay running across the manager's death, then end
        os.kill(pid, signal.SIGSTOP)
    running = server.submit_all(mixed_queries(40))

    os.kill(old, signal.SIGKILL)
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    accepted, unavailable = [], 0
    deadline = time.monotonic() + 60
    while len(accepted) < 20:  # each answers at once: 200, or 503 while the manager restarts
        status, headers, reply = server.fetch("POST", "/api/states_mean", {"question": OBESITY})
        if status == 200:
            accepted.append(json.loads(reply)["job_id"])
        else:
            assert (status, headers["Retry-After"]) == (503, "1"), reply
            unavailable += 1
        assert time.monotonic() < deadline, f"no recovery: {status} {reply!r}"

    for job_id in [*running, *accepted]:
        assert json.loads(settled_result(server, job_id, deadline))["status"] == "done", job_id
    for job_id, body in before.items():
        assert settled_result(server, job_id, deadline) == body, f"{job_id} changed after the restart"
    while True:  # both front-ends see the new manager
        ledgers = [server.get_json("/api/health")["ledger"] for _ in range(20)]
        if all(ledger["pid"] != old and ledger["restarts"] == 1 for ledger in ledgers):
            break
        assert time.monotonic() < deadline, ledgers
    assert os.getpgid(ledgers[0]["pid"]) == server.pid, "the new manager is the node's"
    numbers = [int(job_id.removeprefix("job_id_")) for job_id in [*before, *running, *accepted]]
    assert len(set(numbers)) == len(numbers)

    assert server.stop() == 0, server.output()
    server.assert_released()
    again = servers(tmp_path / "state", args=("--frontends", "2"))
    for job_id, body in before.items():
        assert again.result(job_id, timeout=0) == body, job_id
    for job_id in [*running, *accepted]:
        assert json.loads(again.result(job_id, timeout=0))["status"] == "done", job_id
