"""End to end: `python -m server` as a real process, real signals, real restarts (API.md, "Jobs",
"Command line" and the SIGTERM/SIGINT paragraph).

Every server is started in its own session (so its whole process tree is one process group) on a
free port of 127.0.0.1 and a state dir under tmp_path; the `servers` fixture kills whatever is left
of it when the test ends, passed or failed.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from reference import QUERY_NAMES
from serverproc import READY_TIMEOUT_S, RESULT_TIMEOUT_S, segments_of

OBESITY = "Percent of adults aged 18 years and older who have obesity"
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"
QUERIES = QUERY_NAMES
SHUTTING_DOWN = {"status": "error", "reason": "shutting down"}


def mixed_queries(count):
    """`count` valid (query, body) pairs cycling through the nine queries and two questions."""
    pairs = []
    for n in range(count):
        query = QUERIES[n % len(QUERIES)]
        body = {"question": (OBESITY, MUSCLE)[n // len(QUERIES) % 2]}
        if query.startswith("state_"):
            body["state"] = ("Ohio", "Utah", "Guam", "National")[n % 4]
        pairs.append((query, body))
    return pairs


def test_sigterm_after_50_jobs_exits_0_and_releases_everything(servers, tmp_path):
    server = servers(tmp_path / "state")
    ids = [server.submit(query, body) for query, body in mixed_queries(50)]
    for job_id in ids:
        assert json.loads(server.result(job_id))["status"] == "done", job_id
    assert server.get_json("/api/num_jobs") == {"num_jobs": 0}
    assert f"lestats_{server.pid}_default" in segments_of(server.pid), (
        "while it runs, its data is in a segment named for its pid"
    )

    assert server.stop(signal.SIGTERM) == 0, server.output()
    server.assert_released()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_either_event_loop_answers_and_exits_0(servers, tmp_path, loop):
    server = servers(tmp_path / "state", args=("--loop", loop))
    assert server.get_json("/api/health")["event_loop"] == loop
    ids = server.submit_all(mixed_queries(20))
    for job_id in ids:
        assert json.loads(server.result(job_id))["status"] == "done", job_id

    assert server.stop(signal.SIGTERM) == 0, server.output()
    server.assert_released()


CALL_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO lestats\.http: "


def test_every_call_is_logged_on_entry_with_its_body_and_on_exit_with_its_status(servers, tmp_path):
    server = servers(tmp_path / "state")
    job_id = server.submit("states_mean", {"question": OBESITY})
    server.result(job_id)
    assert server.stop(signal.SIGTERM) == 0, server.output()

    lines = server.log_path.read_text().splitlines()
    body = json.dumps({"question": OBESITY})
    for expected in (
        f"enter POST /api/states_mean b'{body}'",
        "exit POST /api/states_mean 200",
        f"enter GET /api/get_results/{job_id} ",
        f"exit GET /api/get_results/{job_id} 200",
    ):
        assert any(re.fullmatch(CALL_LINE + re.escape(expected), line) for line in lines), (expected, lines[-8:])


def test_sigint_exits_0_and_releases_everything(servers, tmp_path):
    server = servers(tmp_path / "state")
    ids = server.submit_all(mixed_queries(50))

    assert server.stop(signal.SIGINT) == 0, server.output()
    server.assert_released()
    # The signal drained the accepted jobs: every one is journalled as done.
    again = servers(tmp_path / "state")
    for job_id in ids:
        assert json.loads(again.result(job_id, timeout=0))["status"] == "done", job_id


def test_300_jobs_in_flight_finish_through_graceful_shutdown(servers, tmp_path):
    server = servers(tmp_path / "state")
    ids = server.submit_all(mixed_queries(300))
    assert sorted(ids, key=lambda job_id: int(job_id.removeprefix("job_id_"))) == [f"job_id_{n}" for n in range(1, 301)]

    assert server.get_json("/api/graceful_shutdown") in ({"status": "running"}, {"status": "done"})
    status, body = server.call("POST", "/api/states_mean", {"question": OBESITY})
    assert (status, json.loads(body)) == (503, SHUTTING_DOWN)

    for job_id in ids:
        assert json.loads(server.result(job_id))["status"] == "done", job_id
    assert server.get_json("/api/graceful_shutdown") == {"status": "done"}
    assert server.get_json("/api/num_jobs") == {"num_jobs": 0}
    jobs = server.get_json("/api/jobs")["data"]
    assert jobs == [{f"job_id_{n}": "done"} for n in range(1, 301)]
    status, body = server.call("POST", "/api/global_mean", {"question": MUSCLE})
    assert (status, json.loads(body)) == (503, SHUTTING_DOWN)

    assert server.stop(signal.SIGTERM) == 0, server.output()
    server.assert_released()


# ---------------------------------------------------------------------------------------------
# Restarts


def test_a_restart_after_a_clean_stop_serves_the_same_results_and_continues_ids(servers, tmp_path):
    first = servers(tmp_path / "state")
    ids = [first.submit(query, body) for query, body in mixed_queries(30)]
    results = {job_id: first.result(job_id) for job_id in ids}
    assert ids == [f"job_id_{n}" for n in range(1, 31)]
    assert first.stop() == 0, first.output()
    first.assert_released()

    second = servers(tmp_path / "state")
    for job_id, body in results.items():
        assert second.result(job_id, timeout=0) == body, job_id
    assert second.get_json("/api/jobs")["data"] == [{job_id: "done"} for job_id in ids]
    assert second.submit("global_mean", {"question": OBESITY}) == "job_id_31"
    assert second.stop() == 0, second.output()
    second.assert_released()


def test_a_restart_after_sigkill_keeps_every_done_result_and_never_reuses_an_id(servers, tmp_path):
    crashed = servers(tmp_path / "state")
    done_ids = [crashed.submit(query, body) for query, body in mixed_queries(40)]
    reported = {job_id: crashed.result(job_id) for job_id in done_ids}
    assert all(json.loads(body)["status"] == "done" for body in reported.values())
    in_flight = crashed.submit_all(mixed_queries(200))  # some may still be running at the kill
    issued = done_ids + in_flight
    highest = max(int(job_id.removeprefix("job_id_")) for job_id in issued)
    for job_id in in_flight[:5]:  # wait for a few more, to also have done results from the last batch
        reported[job_id] = crashed.result(job_id)

    crashed.kill_group()
    assert f"lestats_{crashed.pid}_default" in segments_of(crashed.pid), "a killed run leaves its segment behind"

    restarted = servers(tmp_path / "state")
    assert segments_of(crashed.pid) == [], "the restart reclaims what the dead run left in /dev/shm"
    for job_id, body in reported.items():
        assert restarted.result(job_id, timeout=0) == body, job_id
    for job_id in issued:  # an issued id is never unknown; a job the crash cut short is not running
        reply = json.loads(restarted.result(job_id, timeout=0))
        assert reply["status"] in ("done", "error"), (job_id, reply)
    known = {next(iter(entry)) for entry in restarted.get_json("/api/jobs")["data"]}
    assert set(issued) <= known

    new_id = restarted.submit("global_mean", {"question": OBESITY})
    assert int(new_id.removeprefix("job_id_")) > highest, f"{new_id} after ids up to {highest} were handed out"
    assert new_id not in known
    assert json.loads(restarted.result(new_id))["status"] == "done"

    assert restarted.stop() == 0, restarted.output()
    restarted.assert_released()
    assert segments_of(crashed.pid) == []


def crash_with_jobs_cut_short(servers, state_dir):
    """Run 3 jobs to done, then stop the workers (SIGSTOP, not kill) so that the next 5 jobs are
    accepted but never finish, SIGKILL the whole server and restart it on the same state dir.
    Returns (the restarted server, the done ids, the cut-short ids)."""
    crashed = servers(state_dir)
    finished = [crashed.submit("global_mean", {"question": OBESITY}) for _ in range(3)]
    for job_id in finished:
        crashed.result(job_id)
    for pid in crashed.get_json("/api/health")["workers"]:
        os.kill(pid, signal.SIGSTOP)
    cut_short = [crashed.submit("states_mean", {"question": OBESITY}) for _ in range(5)]
    assert crashed.get_json("/api/num_jobs") == {"num_jobs": 5}
    # The server records how far ids were issued every few tens of ms (README, "Crashes"): a job
    # accepted in the last moments before a crash could otherwise come back as never issued.
    last = int(cut_short[-1].removeprefix("job_id_"))
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while crashed.get_json("/api/health")["jobs"]["issued_recorded_up_to"] < last:
        assert time.monotonic() < deadline, "the server never recorded the issued ids"
        time.sleep(0.01)
    crashed.kill_group()
    return servers(state_dir), finished, cut_short


def test_jobs_cut_short_by_a_crash_are_failed_jobs_in_get_results_and_in_jobs(servers, tmp_path):
    restarted, finished, cut_short = crash_with_jobs_cut_short(servers, tmp_path / "state")

    assert restarted.get_json("/api/num_jobs") == {"num_jobs": 0}
    for job_id in cut_short:
        reply = json.loads(restarted.result(job_id, timeout=0))
        assert reply["status"] == "error" and reply["reason"], (job_id, reply)
    listed = dict(item for entry in restarted.get_json("/api/jobs")["data"] for item in entry.items())
    assert {job_id: listed.get(job_id) for job_id in finished + cut_short} == {
        **dict.fromkeys(finished, "done"),
        **dict.fromkeys(cut_short, "error"),
    }, "/api/jobs should list every job get_results knows, with the same status"


def test_an_id_never_handed_out_before_a_crash_is_still_invalid_after_it(servers, tmp_path):
    restarted, finished, cut_short = crash_with_jobs_cut_short(servers, tmp_path / "state")

    next_new = int(restarted.submit("global_mean", {"question": OBESITY}).removeprefix("job_id_"))
    assert next_new > len(finished) + len(cut_short)
    for n in (len(finished) + len(cut_short) + 1, next_new - 1):
        status, body = restarted.call("GET", f"/api/get_results/job_id_{n}")
        assert (status, json.loads(body)) == (404, {"status": "error", "reason": "Invalid job_id"}), (
            f"job_id_{n} was never handed out (the crashed run issued ids 1-8, the restart {next_new} on)"
        )


# ---------------------------------------------------------------------------------------------
# A data file the server refuses


HEADER = "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"


@pytest.mark.parametrize(
    "name, content, also_named",
    [
        ("missing.csv", None, []),
        ("a-directory", "directory", []),
        ("latin-1.csv", (HEADER + f"Bogot\u00e1,{OBESITY},30.5,Total,Total\n").encode("latin-1"), []),
        (
            "no-value-column.csv",
            "LocationDesc,Question,StratificationCategory1\nOhio,Q,Total\n",
            ["Data_Value", "line 1"],
        ),
        (
            "bad-value.csv",
            HEADER + f"Ohio,{OBESITY},30.5,Total,Total\nOhio,{OBESITY},abc,Total,Total\n",
            ["Data_Value", "line 3"],
        ),
    ],
    ids=["missing-file", "directory", "not-utf8", "missing-column", "bad-value"],
)
def test_a_bad_data_file_stops_the_server_with_a_message_naming_it(servers, tmp_path, name, content, also_named):
    data = tmp_path / name
    if content == "directory":
        data.mkdir()
    elif isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    server = servers(tmp_path / "state", data=data, wait=False)
    try:
        status = server.proc.wait(timeout=READY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`python -m server --data {data}` is still running:\n{server.output()}")

    output = server.output()
    assert status != 0, output
    assert str(data) in output, output
    for words in also_named:
        assert words in output, output
    assert segments_of(server.pid) == []
    assert "Traceback" not in output, f"a person gets a one-line reason, not a crash dump:\n{output}"
