"""Stops and crashes as an operator and a system service manager make them (README, "Stopping and
crashing"): a signal to the whole process group, idle, under load and right after a load; the
server SIGKILLed alone; the forkserver killed alone; and the log of a clean stop.

Every server runs in its own session, so its process group is exactly its tree of processes; the
`servers` fixture kills whatever a failed test leaves. Timeouts are generous bounds on polling
loops, never the thing asserted.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from serverproc import free_port, group_members, segments_of
from test_process import mixed_queries

ORPHAN_TIMEOUT_S = 10


def command_of(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent_of(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def id_number(job_id):
    return int(job_id.removeprefix("job_id_"))


def wait_for_no_members(pgid, timeout_s=ORPHAN_TIMEOUT_S):
    """Poll until no live process of group `pgid` is left (or the bound passes); what is left."""
    deadline = time.monotonic() + timeout_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {pid: command_of(pid) for pid in left}


class Load:
    """Clients posting queries in threads until stopped; the ids of the jobs the server accepted."""

    def __init__(self, server, clients=3):
        self.server = server
        self.accepted = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _post(self, offset):
        pairs = mixed_queries(90)
        n = offset
        while not self._stop.is_set():
            query, body = pairs[n % len(pairs)]
            n += 1
            try:
                status, reply = self.server.call("POST", f"/api/{query}", body, timeout=5)
            except OSError:
                return  # the server has stopped listening
            if status != 200:
                return  # 503: it is shutting down
            self.accepted.append(json.loads(reply)["job_id"])

    def wait_for(self, count, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.accepted) >= count, f"only {len(self.accepted)} jobs accepted in {timeout_s} s"

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def assert_all_done(server, ids):
    for job_id in ids:
        assert json.loads(server.result(job_id, timeout=0))["status"] == "done", job_id


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("when", ["idle", "under load", "right after a load"])
def test_a_signal_to_the_whole_group_drains_exits_0_and_leaves_nothing(servers, tmp_path, when, signum):
    server = servers(tmp_path / "state")
    accepted = []
    if when == "right after a load":
        accepted = server.submit_all(mixed_queries(200))
    load = Load(server) if when == "under load" else None
    if load:
        load.wait_for(60)

    assert server.stop_group(signum) == 0, server.output()
    assert "Traceback" not in server.output(), server.output()
    if load:
        load.stop()
        accepted = load.accepted
    server.assert_released()
    assert server.error_lines() == []
    # Every job accepted before the signal was drained and journalled as done.
    again = servers(tmp_path / "state")
    assert_all_done(again, accepted)


@pytest.mark.slow
def test_300_jobs_in_flight_graceful_shutdown_then_sigterm_to_the_group(servers, tmp_path):
    server = servers(tmp_path / "state")
    ids = server.submit_all(mixed_queries(300))
    assert server.get_json("/api/graceful_shutdown") in ({"status": "running"}, {"status": "done"})

    assert server.stop_group(signal.SIGTERM) == 0, server.output()
    server.assert_released()
    assert server.error_lines() == []
    again = servers(tmp_path / "state")
    assert_all_done(again, ids)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["idle", "under load"])
def test_the_server_sigkilled_alone_leaves_no_process_behind(servers, tmp_path, when):
    server = servers(tmp_path / "state")
    children = [pid for pid in group_members(server.pid) if pid != server.pid]
    assert len(children) >= 4, f"workers, manager, forkserver, resource tracker: {children}"
    load = Load(server) if when == "under load" else None
    if load:
        load.wait_for(60)

    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    if load:
        load.stop()
    assert wait_for_no_members(server.pid) == {}, "children of a SIGKILLed server outlived it"

    # The next start on the same state dir reclaims the dead run's shared memory.
    left = segments_of(server.pid)
    again = servers(tmp_path / "state")
    assert segments_of(server.pid) == [], f"left by the dead run: {left}"
    if load:
        # Done means journalled: jobs finished before the kill are still done. README, "Job ids after
        # a crash": a job accepted in the last moments before it may be reported as never issued,
        # and nothing else may be: so only the newest accepted ids may answer 404 Invalid job_id.
        replies = {job: again.call("GET", f"/api/get_results/{job}") for job in load.accepted}
        done = [
            job for job, (status, body) in replies.items() if status == 200 and json.loads(body)["status"] == "done"
        ]
        assert done, "no job finished before the kill"
        unknown = [job for job, (status, _) in replies.items() if status != 200]
        assert all(replies[job] == (404, b'{"status":"error","reason":"Invalid job_id"}') for job in unknown), replies
        if unknown:
            assert min(map(id_number, unknown)) > max(id_number(job) for job in replies if job not in unknown), unknown


@pytest.mark.slow
def test_the_forkserver_killed_alone_takes_its_children_and_the_server_replaces_them(servers, tmp_path):
    """Its children die with it (none is left believed dead but still reading the pool's queue);
    the supervisor restarts the ledger and the pool, no accepted job is lost, and the stop is clean."""
    server = servers(tmp_path / "state")
    before = server.get_json("/api/health")
    (forkserver,) = [
        pid
        for pid in group_members(server.pid)
        if parent_of(pid) == server.pid and "multiprocessing.forkserver" in command_of(pid)
    ]
    children = [pid for pid in group_members(server.pid) if parent_of(pid) == forkserver]
    assert sorted(children) == sorted([*before["workers"], before["ledger"]["pid"]])
    ids = server.submit_all(mixed_queries(50))
    os.kill(forkserver, signal.SIGKILL)

    deadline = time.monotonic() + ORPHAN_TIMEOUT_S
    while (left := set(children) & set(group_members(server.pid))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, "children of the killed forkserver still alive"
    while (after := server.get_json("/api/health"))["status"] != "ok" and time.monotonic() < deadline + 20:
        time.sleep(0.05)  # 503 while the ledger restarts
    assert after["ledger"]["restarts"] == 1 and after["status"] == "ok", after
    ids += server.submit_all(mixed_queries(50))
    for job_id in ids:
        assert json.loads(server.result(job_id))["status"] == "done", job_id
    assert server.stop_group(signal.SIGTERM) == 0, server.output()
    server.assert_released()


SMALL_CSV = (
    b"LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"
    b"Ohio,Share of people who stop,10.5,Total,Total\n"
    b"Utah,Share of people who stop,20,Total,Total\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("before", ["nothing", "graceful_shutdown", "an upload and a delete", "a load"])
def test_a_clean_stop_logs_no_error(servers, tmp_path, before):
    for run in range(3):
        server = servers(tmp_path / f"state{run}")
        if before == "graceful_shutdown":
            assert server.get_json("/api/graceful_shutdown") == {"status": "done"}
        elif before == "an upload and a delete":
            status, body = server.call("POST", "/api/datasets", SMALL_CSV)
            assert status == 200, body
            dataset = json.loads(body)["dataset"]
            assert server.call("DELETE", f"/api/datasets/{dataset}")[0] == 200
        elif before == "a load":
            server.submit_all(mixed_queries(100))
        assert server.stop(signal.SIGTERM) == 0, server.output()
        log = server.log_path.read_text()
        assert " stopped; next job id " in log, log[-2000:]
        assert server.error_lines() == [], f"run {run}"


@pytest.mark.slow
def test_sigterm_drains_like_graceful_shutdown_with_the_port_still_open(servers, tmp_path):
    """API.md: SIGTERM drains exactly as graceful_shutdown does, so while accepted jobs finish,
    get_results, jobs and num_jobs keep answering and new queries get 503 "shutting down". The
    workers are stopped (SIGSTOP) so that the drain surely lasts while the test looks."""
    server = servers(tmp_path / "state")
    workers = server.get_json("/api/health")["workers"]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        ids = server.submit_all(mixed_queries(30))
        os.killpg(server.pid, signal.SIGTERM)
        status, reply = server.call("GET", f"/api/get_results/{ids[-1]}")
        assert (status, json.loads(reply)) == (200, {"status": "running"})
        assert server.get_json("/api/num_jobs")["num_jobs"] > 0
        assert len(server.get_json("/api/jobs")["data"]) == len(ids)
        status, reply = server.call("POST", "/api/global_mean", {"question": mixed_queries(1)[0][1]["question"]})
        assert (status, json.loads(reply)) == (503, {"status": "error", "reason": "shutting down"})
        assert server.proc.poll() is None, "the server must wait for its accepted jobs"
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert server.proc.wait(timeout=60) == 0, server.output()
    server.assert_released()
    assert_all_done(servers(tmp_path / "state"), ids)


def test_a_second_server_on_the_same_state_dir_or_port_is_refused_at_once(servers, tmp_path):
    first = servers(tmp_path / "state")
    taken = [
        ("--state-dir", str(tmp_path / "state"), "in use by another server"),
        ("--port", str(first.port), "Address already in use"),
    ]
    for flag, value, why in taken:
        other = tmp_path / "other"
        args = ["--port", str(free_port()), "--state-dir", str(other), flag, value]
        done = subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("cannot start: ") and why in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert first.get_json("/api/num_jobs") == {"num_jobs": 0}


@pytest.mark.parametrize("frontends", ["1", "2"])
@pytest.mark.parametrize(
    "index", [b'{"next": 3, "datasets": {"upload1": "u', b"[1, 2]", b'{"next": null, "datasets": {}}']
)
def test_a_damaged_uploads_index_is_refused_naming_it_and_left_as_it_was(tmp_path, frontends, index):
    """Starting without the uploads it lists would give their ids again and delete their files."""
    state = tmp_path / "state"
    (state / "datasets").mkdir(parents=True)
    (state / "datasets" / "index.json").write_bytes(index)
    (state / "datasets" / "upload1.csv").write_bytes(b"LocationDesc,Question,Data_Value\nOhio,Q,1.0\n")
    args = ["--port", str(free_port()), "--state-dir", str(state), "--frontends", frontends]
    done = subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot start: " in done.stderr and "index.json" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert (state / "datasets" / "index.json").read_bytes() == index
    assert (state / "datasets" / "upload1.csv").exists()
