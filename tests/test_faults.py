"""Faults, end to end: `python -m server` as a real process, hurt with real signals (README,
"Reliability", "Choices where the contract is silent" and "Configuration").

- workers SIGKILLed under load; the ledger's manager process SIGKILLed, idle and under load;
- a state dir on a tiny tmpfs that fills up, then frees up again;
- stale shared memory of a dead run in /dev/shm, next to a live run's and another program's;
- the admin routes with and without a token;
- the queue cap (workers SIGSTOPped), retention by count and by age, kept across a restart.

Nothing here is mocked but a transport in the one unit test of `server.admin.refusal` (a request
"from" a non-loopback address, without sending any traffic). Every server runs in its own session
on a free port of 127.0.0.1; the `launch` fixture stops, then kills, whatever is left of it.
Timeouts are generous: nothing here asserts how fast anything is.
"""

import asyncio
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from reference import QUERY_NAMES
from serverproc import (
    SHM,
    group_members,
    segments_of,
)

OBESITY = "Percent of adults aged 18 years and older who have obesity"
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"
QUERIES = QUERY_NAMES
STATE_QUERIES = ("state_mean", "state_diff_from_mean", "state_mean_by_category")
EXPIRED = {"status": "error", "reason": "expired"}
INVALID = {"status": "error", "reason": "Invalid job_id"}
TOKEN = "s3cret"
SMALL_CSV = (
    b"LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"
    b"Ohio,Share of people who test faults,10.5,Total,Total\n"
    b"Ohio,Share of people who test faults,11.5,Sex,Female\n"
    b"Utah,Share of people who test faults,20,Total,Total\n"
)


# ---------------------------------------------------------------------------------------------
# Servers with extra options, and plain HTTP


@pytest.fixture
def launch(servers):
    """launch(state_dir, *options, env=None, workers=2, wait=True) -> a Server with those options."""

    def start(state_dir, *args, env=None, workers=2, wait=True):
        return servers(state_dir, wait=wait, args=args, env=env, workers=workers)

    return start


def json_reply(server, method, path, body=None, headers=None):
    status, _, reply = server.fetch(method, path, body, headers)
    return status, json.loads(reply)


def health(server):
    return server.get_json("/api/health")


def status_of(server, job_id):
    return json.loads(server.result(job_id))["status"]


def proc_stat(pid):
    """(state, pgid) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def is_live_member(pid, server):
    """A live (not zombie) process of the server's process group."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z" and stat[1] == server.pid


def wait_until(condition, timeout_s, what, interval_s=0.05):
    """Poll `condition()` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what() if callable(what) else what}: not within {timeout_s:g} s")
        time.sleep(interval_s)


def diagnosis(server):
    """For a failure message: health, the jobs still running, the log's last non-call lines, the
    output, and where each thread of the server's processes sleeps."""
    try:
        state = health(server)
        running = [
            job
            for entry in server.get_json("/api/jobs")["data"]
            for job, status in entry.items()
            if status == "running"
        ]
    except (OSError, AssertionError) as error:
        state, running = f"unreachable: {error}", "?"
    try:
        lines = [line for line in server.log_path.read_text().splitlines() if "lestats.http" not in line]
    except OSError as error:
        lines = [f"no log: {error}"]
    tail = "\n".join(lines[-15:])
    return (
        f"health {state}\nrunning jobs {running[:20]}\nlog:\n{tail}\nstdout and stderr:\n{server.output()[-1500:]}"
        f"\nprocesses:\n{threads_of_group(server)}"
    )


def threads_of_group(server):
    """For a failure message: every process of the server's group, and where each thread sleeps."""
    lines = []
    for pid in group_members(server.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:100].decode(errors="replace")
        except OSError:
            continue
        lines.append(f"{pid} {proc_stat(pid)} {command}")
        for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
            with contextlib.suppress(OSError):
                lines.append(
                    f"    thread {task.name} {(task / 'comm').read_text().strip()}: {(task / 'wchan').read_text()}"
                )
    return "\n".join(lines)


def stop(server, signum=signal.SIGTERM, timeout_s=30):
    """Like Server.stop (the exit status after `signum`), but a server that does not exit is
    described in the failure: its log, its output, and where each of its threads sleeps."""
    os.kill(server.pid, signum)
    try:
        return server.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        lines = [line for line in server.log_path.read_text().splitlines() if "lestats.http" not in line][-10:]
    except OSError:
        lines = []
    pytest.fail(
        f"the server did not exit within {timeout_s} s of signal {signum}\nlog:\n"
        + "\n".join(lines)
        + f"\noutput:\n{server.output()[-1500:]}\nprocesses:\n{threads_of_group(server)}"
    )


def assert_unavailable(status, headers, body, context=""):
    """A 503 as the README promises it: a JSON reason and a Retry-After header."""
    assert status == 503, (context, status, body)
    reply = json.loads(body)
    assert reply["status"] == "error" and reply["reason"], (context, reply)
    assert headers.get("Retry-After"), (context, "a 503 without Retry-After", dict(headers))


def random_query(rng, questions, states):
    """A valid (query, body): state queries over all years, the others often with a `years` range
    (that always holds 2017-2019, where every question of the sample has values), so that most
    queries are new to the server's answer cache and really reach the workers."""
    kind = rng.choice(QUERIES)
    body = {"question": rng.choice(questions)}
    if kind in STATE_QUERIES:
        body["state"] = rng.choice(states)
    elif rng.random() < 0.8:
        body["years"] = [rng.randint(2011, 2017), rng.randint(2019, 2022)]
    return kind, body


def catalog(server):
    default = next(item for item in server.get_json("/api/datasets")["datasets"] if item["dataset"] == "default")
    return default["questions"], default["states"]


# ---------------------------------------------------------------------------------------------
# 1. Workers killed under load


async def load_while_killing_workers(server, questions, states, duration_s=4.0, kill_every_s=0.3, clients=4):
    """`clients` closed-loop clients submit random queries for `duration_s` (each polls its job
    briefly with ?wait=, never blocking on it), while a worker is SIGKILLed every `kill_every_s`.
    Returns (job ids, refused submissions, killed pids, monotonic time of the last kill)."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration_s
    submitted, refused, killed = [], [], []
    last_kill = [time.monotonic()]
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(server.url, timeout=timeout) as session:

        async def client(seed):
            rng = random.Random(seed)
            while loop.time() < stop_at:
                kind, body = random_query(rng, questions, states)
                async with session.post(f"/api/{kind}", json=body) as response:
                    text = await response.text()
                if response.status != 200:
                    refused.append((kind, body, response.status, text))
                    continue
                job_id = json.loads(text)["job_id"]
                submitted.append(job_id)
                async with session.get(f"/api/get_results/{job_id}", params={"wait": "0.5"}) as response:
                    await response.read()

        async def killer():
            rng = random.Random(1)
            while loop.time() + kill_every_s < stop_at:
                await asyncio.sleep(kill_every_s)
                async with session.get("/api/health") as response:
                    workers = (await response.json())["workers"]
                # Only a live member of this server's group: never a recycled pid of someone else.
                targets = [pid for pid in workers if pid not in killed and is_live_member(pid, server)]
                if targets:
                    pid = rng.choice(targets)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    last_kill[0] = time.monotonic()

        await asyncio.gather(*(client(seed) for seed in range(clients)), killer())
    return submitted, refused, killed, last_kill[0]


async def statuses_of(server, job_ids):
    """get_results of every id (no waiting), as {job_id: (http status, reply)}."""
    async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=60)) as session:
        semaphore = asyncio.Semaphore(16)

        async def one(job_id):
            async with semaphore, session.get(f"/api/get_results/{job_id}", params={"wait": "0"}) as response:
                return job_id, (response.status, json.loads(await response.read()))

        return dict(await asyncio.gather(*(one(job_id) for job_id in job_ids)))


def test_workers_sigkilled_every_300_ms_under_load_lose_no_job(launch, tmp_path):
    server = launch(tmp_path / "state", workers=2)
    questions, states = catalog(server)

    submitted, refused, killed, last_kill = asyncio.run(load_while_killing_workers(server, questions, states))
    assert not refused, f"valid queries refused while workers were being killed: {refused[:3]}"
    assert len(killed) >= 8, f"only {len(killed)} workers were killed; the test did not do its job"
    assert len(submitted) >= 50, f"only {len(submitted)} jobs were submitted in 4 s"
    deadline = last_kill + 10

    def no_job_running():
        return server.get_json("/api/num_jobs") == {"num_jobs": 0}

    wait_until(
        no_job_running,
        deadline - time.monotonic(),
        lambda: f"num_jobs back to 0 after the last kill ({len(submitted)} jobs; killed {killed})\n{diagnosis(server)}",
    )

    def two_new_live_workers():
        workers = health(server)["workers"]
        return (
            len(workers) == 2 and not set(workers) & set(killed) and all(is_live_member(pid, server) for pid in workers)
        ) and workers

    wait_until(
        two_new_live_workers,
        max(deadline - time.monotonic(), 1),
        lambda: f"/api/health listing 2 live workers, none of the killed {killed}\n{diagnosis(server)}",
    )

    replies = asyncio.run(statuses_of(server, submitted))
    unfinished = {
        job_id: reply
        for job_id, reply in replies.items()
        if reply[0] != 200 or reply[1]["status"] not in ("done", "error")
    }
    assert not unfinished, f"jobs not finished (or unknown) after the kills: {dict(list(unfinished.items())[:5])}"
    done = sum(reply["status"] == "done" for _, reply in replies.values())
    errors = {reply["reason"] for _, reply in replies.values() if reply["status"] == "error"}
    assert done >= 0.9 * len(submitted), f"only {done} of {len(submitted)} jobs done; errors: {errors}"

    fresh = server.submit("global_mean", {"question": OBESITY})
    assert status_of(server, fresh) == "done"
    assert two_new_live_workers(), f"after the fresh job: {health(server)['workers']} (killed: {killed})"

    assert stop(server) == 0, server.output()
    server.assert_released()


def wchan(pid):
    """Where in the kernel a process sleeps ("anon_pipe_write", "futex_do_wait", ...), or ""."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


async def kill_a_worker_blocked_sending_replies(server, questions, timeout_s=20):
    """Clients submit mean_by_category queries (replies of ~80 KB, batched) without waiting for
    them; the first worker seen asleep in a pipe write (its batch's replies to the pool's result
    pipe, which holds 64 KiB, so it is in the middle of a message) is SIGKILLed, and the load
    stops. Returns (job ids, the killed pid, or None if no worker was ever caught so)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    submitted, killed = [], []
    async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=20)) as session:

        async def client(seed):
            rng = random.Random(seed)
            while not killed and loop.time() < give_up:
                body = {"question": rng.choice(questions), "years": [rng.randint(2011, 2017), rng.randint(2019, 2022)]}
                async with session.post("/api/mean_by_category", json=body) as response:
                    text = await response.text()
                assert response.status == 200, text
                submitted.append(json.loads(text)["job_id"])

        async def sniper():
            async with session.get("/api/health") as response:
                workers = (await response.json())["workers"]
            while not killed and loop.time() < give_up:
                await asyncio.sleep(0.002)
                for pid in workers:
                    if "pipe_write" in wchan(pid) and is_live_member(pid, server):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        break

        await asyncio.gather(*(client(seed) for seed in range(4)), sniper())
    return submitted, (killed[0] if killed else None)


def test_a_worker_killed_while_sending_its_replies_loses_no_job(launch, tmp_path):
    """The same promise as above ("a worker killed mid-job"), at the moment a worker is most
    likely to die for real (the OOM killer picks it while it holds a batch of large replies):
    killed in the middle of sending them to the server. compute/stuck_locks.py frees the result
    queue's lock it held, but says such a torn message "is not covered", its window being "a few
    microseconds wide"; with replies of ~80 KB in batches the window is wide open."""
    server = launch(tmp_path / "state", workers=2)
    questions, _ = catalog(server)

    submitted, killed = asyncio.run(kill_a_worker_blocked_sending_replies(server, questions))
    if killed is None:
        pytest.skip("no worker was ever caught in the middle of a pipe write (/proc/<pid>/wchan)")
    wait_until(
        lambda: server.get_json("/api/num_jobs") == {"num_jobs": 0},
        15,
        lambda: (
            f"num_jobs back to 0 after worker {killed} was killed mid-send ({len(submitted)} jobs)\n{diagnosis(server)}"
        ),
    )
    replies = asyncio.run(statuses_of(server, submitted))
    unfinished = {
        job_id: reply
        for job_id, reply in replies.items()
        if reply[0] != 200 or reply[1]["status"] not in ("done", "error")
    }
    assert not unfinished, f"jobs not finished (or unknown): {dict(list(unfinished.items())[:5])}"
    done = sum(reply["status"] == "done" for _, reply in replies.values())
    assert done >= 0.9 * len(submitted), f"only {done} of {len(submitted)} jobs done"
    assert status_of(server, server.submit("global_mean", {"question": OBESITY})) == "done"
    workers = health(server)["workers"]
    assert len(workers) == 2 and killed not in workers and all(is_live_member(pid, server) for pid in workers)

    assert stop(server) == 0, server.output()
    server.assert_released()


# ---------------------------------------------------------------------------------------------
# 2. The ledger's manager process killed


def ledger_pid(server):
    pid = health(server)["ledger"]["pid"]
    assert pid and is_live_member(pid, server), f"the ledger pid {pid} is not a live process of the server"
    return pid


def wait_for_ledger_back(server, old_pid, restarts):
    def back():
        state = health(server)
        ledger = state["ledger"]
        return state["status"] == "ok" and ledger["restarts"] >= restarts and ledger["pid"] != old_pid and state

    state = wait_until(
        back, 30, f"/api/health ok again with ledger.restarts >= {restarts} after killing the manager {old_pid}"
    )
    assert is_live_member(state["ledger"]["pid"], server)
    assert state["problems"] == []
    return state


def finished_bodies(server, count):
    ids = [
        server.submit(query, body)
        for query, body in (
            (QUERIES[n % len(QUERIES)], {"question": (OBESITY, MUSCLE)[n % 2], "state": "Ohio"}) for n in range(count)
        )
    ]
    bodies = {job_id: server.result(job_id) for job_id in ids}
    assert all(json.loads(body)["status"] == "done" for body in bodies.values())
    return bodies


def test_the_manager_killed_while_idle_is_restarted_and_nothing_is_lost(launch, tmp_path):
    server = launch(tmp_path / "state")
    before = finished_bodies(server, 12)
    old = ledger_pid(server)

    os.kill(old, signal.SIGKILL)
    accepted, unavailable = [], 0
    rng = random.Random(2)
    questions, states = catalog(server)
    deadline = time.monotonic() + 30
    while True:  # probe with queries while it recovers: each answers at once, 200 or 503
        kind, body = random_query(rng, questions, states)
        status, headers, reply = server.fetch("POST", f"/api/{kind}", body, timeout=10)
        if status == 200:
            accepted.append(json.loads(reply)["job_id"])
        else:
            assert_unavailable(status, headers, reply, f"POST /api/{kind} after the manager was killed")
            unavailable += 1
        state = health(server)
        if state["ledger"]["restarts"] >= 1 and state["status"] == "ok":
            break
        assert time.monotonic() < deadline, f"the ledger never came back: {state}"
        time.sleep(0.02)

    wait_for_ledger_back(server, old, restarts=1)
    for job_id in accepted:
        assert status_of(server, job_id) == "done", job_id
    for job_id, body in before.items():
        assert server.result(job_id, timeout=0) == body, f"{job_id} changed after the manager was restarted"
    fresh = server.submit("states_mean", {"question": MUSCLE})
    assert status_of(server, fresh) == "done"

    assert stop(server) == 0, server.output()
    server.assert_released()
    # What the restarted ledger journalled is what a next start serves.
    again = launch(tmp_path / "state")
    for job_id, body in before.items():
        assert again.result(job_id, timeout=0) == body, job_id
    for job_id in [*accepted, fresh]:
        assert json.loads(again.result(job_id, timeout=0))["status"] == "done", job_id
    assert stop(again) == 0, again.output()


async def load_while_killing_the_manager(server, questions, states, duration_s=3.0, kill_at_s=1.0, clients=4):
    """Closed-loop clients for `duration_s`; the manager is SIGKILLed at `kill_at_s`. A request
    that does not answer within 10 s is a hang. Returns (accepted ids, replies other than 200 as
    (status, headers, body), hangs, the killed pid)."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration_s
    accepted, others, hangs = [], [], []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(server.url, timeout=timeout) as session:

        async def client(seed):
            rng = random.Random(seed)
            while loop.time() < stop_at:
                kind, body = random_query(rng, questions, states)
                try:
                    async with session.post(f"/api/{kind}", json=body) as response:
                        text = await response.read()
                        status, headers = response.status, response.headers
                    if status == 200:
                        job_id = json.loads(text)["job_id"]
                        accepted.append(job_id)
                        async with session.get(f"/api/get_results/{job_id}", params={"wait": "0.3"}) as response:
                            await response.read()
                    else:
                        others.append((status, headers, text))
                        await asyncio.sleep(0.01)
                except TimeoutError:
                    hangs.append((kind, body))

        async def killer():
            await asyncio.sleep(kill_at_s)
            async with session.get("/api/health") as response:
                pid = (await response.json())["ledger"]["pid"]
            assert is_live_member(pid, server)
            os.kill(pid, signal.SIGKILL)
            return pid

        *_, killed = await asyncio.gather(*(client(seed) for seed in range(clients)), killer())
    return accepted, others, hangs, killed


def test_the_manager_killed_under_load_is_restarted_and_every_accepted_job_ends_done(launch, tmp_path):
    server = launch(tmp_path / "state")
    before = finished_bodies(server, 12)
    questions, states = catalog(server)

    accepted, others, hangs, killed = asyncio.run(load_while_killing_the_manager(server, questions, states))
    assert not hangs, f"{len(hangs)} queries got no answer within 10 s while the manager was down"
    for status, headers, body in others:
        assert_unavailable(status, headers, body, "a query while the manager was down")
    assert len(accepted) >= 20, f"only {len(accepted)} jobs were accepted"

    wait_for_ledger_back(server, killed, restarts=1)
    replies = asyncio.run(statuses_of(server, accepted))
    not_done = {job_id: reply for job_id, reply in replies.items() if reply[1].get("status") != "done"}
    # A job may still be finishing on the new pool: give those time, then they must be done.
    for job_id in not_done:
        assert status_of(server, job_id) == "done", (job_id, server.result(job_id))
    for job_id, body in before.items():
        assert server.result(job_id, timeout=0) == body, f"{job_id} changed after the manager was restarted"
    assert server.get_json("/api/num_jobs") == {"num_jobs": 0}
    fresh = server.submit("worst5", {"question": OBESITY})
    assert status_of(server, fresh) == "done"
    assert health(server)["status"] == "ok"

    assert stop(server) == 0, server.output()
    server.assert_released()


# ---------------------------------------------------------------------------------------------
# 3. A full state dir


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 512 KiB tmpfs mounted under tmp_path (skips when mounting is not permitted); always
    unmounted at teardown. Request it before `launch`, so the server stops before the unmount."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip() or done.returncode}"
        )
    try:
        yield mount_point
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(mount_point)], check=False, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill_up(path):
    """Append to `path` until the file system has no block left (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def test_a_full_state_dir_fails_jobs_with_a_reason_and_recovers_when_space_returns(tiny_tmpfs, launch, tmp_path):
    state_dir = tiny_tmpfs
    server = launch(state_dir, "--log-file", str(tmp_path / "webserver.log"))
    big = {"question": OBESITY}
    first = server.submit("mean_by_category", big)
    assert status_of(server, first) == "done"
    broken = []  # breaches of the README that should not stop the rest of the test from running

    # Fill all but ~150 KiB: room for one more large result (~80 KB), not for many.
    filler = state_dir / "filler"
    stats = os.statvfs(state_dir)
    free = stats.f_bavail * stats.f_frsize
    assert free > 200 * 1024, f"the tmpfs has only {free} bytes free before the filler"
    filler.write_bytes(b"\0" * (free - 150 * 1024))

    failure = None
    questions, _ = catalog(server)
    for n in range(30):
        job_id = server.submit("mean_by_category", {"question": questions[n % len(questions)]})
        reply = json.loads(server.result(job_id))
        if reply["status"] == "error":
            failure = reply
            break
        assert reply["status"] == "done", reply
    assert failure is not None, "30 large results fit in a state dir with 150 KiB free"
    assert "journal" in failure["reason"], failure
    if "space" not in failure["reason"].lower():  # README: "…: [Errno 28] No space left on device"
        broken.append(
            f"the reason for a result the full state dir could not hold does not say so: {failure['reason']!r}"
        )

    # The server keeps answering, and says what is wrong.
    assert server.get_json("/api/num_jobs") == {"num_jobs": 0}
    time.sleep(0.1)  # longer than the 20 ms after which the server journals the ids it issued
    state = health(server)
    if state["status"] != "degraded" or not state["problems"]:
        broken.append(
            f"a result could not be saved, yet /api/health says {state['status']!r} with problems {state['problems']}"
        )

    # Now really full: not a block left, so that even small results (and the server's own small
    # journal lines) fail. Small jobs until one fails and health says degraded.
    fill_up(filler)
    for n in range(300):
        job_id = server.submit("global_mean", {"question": questions[n % len(questions)]})
        reply = json.loads(server.result(job_id))
        assert server.get_json("/api/num_jobs") == {"num_jobs": 0}
        if reply["status"] == "error":
            assert "journal" in reply["reason"], reply
            time.sleep(0.1)
            state = health(server)
            if state["status"] == "degraded":
                break
    else:
        pytest.fail(f"300 small jobs on a full state dir, and /api/health still says {health(server)}")
    assert state["problems"] and any("journal" in problem for problem in state["problems"]), state
    assert json.loads(server.result(first, timeout=0))["status"] == "done", "a result saved before is still served"

    filler.unlink()
    again = server.submit("mean_by_category", big)
    assert status_of(server, again) == "done", server.result(again)
    other = server.submit("mean_by_category", {"question": MUSCLE})
    assert status_of(server, other) == "done"
    wait_until(lambda: health(server)["status"] == "ok", 10, "/api/health ok again once the space is back")
    assert health(server)["problems"] == []

    assert stop(server) == 0, server.output()
    server.assert_released()
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------------------------------------
# 4. Stale shared memory


@pytest.fixture
def shm_files():
    """create(name, content) -> a file in /dev/shm, removed at teardown if still there."""
    made = []

    def create(name, content):
        path = SHM / name
        assert not path.exists(), f"{path} exists already"
        path.write_bytes(content)
        made.append(path)
        return path

    yield create
    for path in made:
        path.unlink(missing_ok=True)


def test_a_start_reclaims_a_dead_runs_shared_memory_and_nothing_else(launch, tmp_path, shm_files):
    exited = subprocess.Popen(["true"])
    exited.wait()
    dead = exited.pid
    assert proc_stat(dead) is None, f"pid {dead} is in use again"
    alive = os.getpid()
    stale_segment = shm_files(f"lestats_{dead}_default", b"a dead run's cells")
    stale_semaphore = shm_files(f"sem.lestats_{dead}_sem-test", b"a dead run's semaphore")
    live_segment = shm_files(f"lestats_{alive}_keep", b"a live process's segment")
    foreign = shm_files(f"other_program_segment_{alive}", b"not ours at all")

    server = launch(tmp_path / "state")

    assert not stale_segment.exists(), f"{stale_segment.name}: the dead run's segment was left behind"
    assert not stale_semaphore.exists(), f"{stale_semaphore.name}: the dead run's semaphore was left behind"
    assert live_segment.read_bytes() == b"a live process's segment", "a live process's segment was touched"
    assert foreign.read_bytes() == b"not ours at all", "another program's segment was touched"

    assert stop(server) == 0, server.output()
    server.assert_released()
    assert live_segment.exists() and foreign.exists(), "the stop removed what was not the server's"


# ---------------------------------------------------------------------------------------------
# 5. Admin routes


def upload(server, headers=None):
    return server.fetch("POST", "/api/datasets", SMALL_CSV, {"Content-Type": "text/csv", **(headers or {})})


def assert_forbidden(status, body, context):
    reply = json.loads(body)
    assert status == 403, (context, status, reply)
    assert reply["status"] == "error" and reply["reason"], (context, reply)


def dataset_ids(server):
    return sorted(item["dataset"] for item in server.get_json("/api/datasets")["datasets"])


@pytest.mark.parametrize("given_by", ["--admin-token", "LESTATS_ADMIN_TOKEN"])
def test_with_an_admin_token_the_admin_routes_need_it(launch, tmp_path, given_by):
    if given_by == "--admin-token":
        server = launch(tmp_path / "state", "--admin-token", TOKEN)
    else:
        server = launch(tmp_path / "state", env={"LESTATS_ADMIN_TOKEN": TOKEN})
    refused = {
        "no Authorization": {},
        "a wrong token": {"Authorization": "Bearer wrong"},
        "the right token, not as Bearer": {"Authorization": f"Basic {TOKEN}"},
    }

    for what, headers in refused.items():
        status, _, body = upload(server, headers)
        assert_forbidden(status, body, f"POST /api/datasets with {what}")
    assert dataset_ids(server) == ["default"], "a refused upload was kept"
    status, _, body = upload(server, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    uploaded = json.loads(body)
    assert uploaded["dataset"] == "upload1" and uploaded["rows"] == 3, uploaded
    assert dataset_ids(server) == ["default", "upload1"]

    for what, headers in refused.items():
        status, _, body = server.fetch("GET", "/api/graceful_shutdown", headers=headers)
        assert_forbidden(status, body, f"GET /api/graceful_shutdown with {what}")
    job_id = server.submit("global_mean", {"question": OBESITY})  # the refusals did not start a drain
    assert status_of(server, job_id) == "done"
    status, _, body = server.fetch("GET", "/api/graceful_shutdown", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, json.loads(body)) == (200, {"status": "done"})
    assert json_reply(server, "POST", "/api/global_mean", {"question": OBESITY}) == (
        503,
        {"status": "error", "reason": "shutting down"},
    )

    assert stop(server) == 0, server.output()
    server.assert_released()


def test_without_a_token_loopback_clients_use_the_admin_routes_unchanged(launch, tmp_path):
    server = launch(tmp_path / "state")
    status, _, body = upload(server)
    assert status == 200, body
    assert json.loads(body)["dataset"] == "upload1"

    job_id = server.submit("best5", {"question": MUSCLE})
    assert status_of(server, job_id) == "done"
    assert server.get_json("/api/graceful_shutdown") == {"status": "done"}
    assert json_reply(server, "POST", "/api/best5", {"question": MUSCLE})[0] == 503

    assert stop(server) == 0, server.output()
    server.assert_released()


def request_from(address, app, headers=None):
    """A request to an admin route as if it came from `address` (the transport's peer name)."""
    from aiohttp.test_utils import make_mocked_request

    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: address if name == "peername" else default
    return make_mocked_request("GET", "/api/graceful_shutdown", headers=headers or {}, app=app, transport=transport)


async def test_admin_refusal_of_a_non_loopback_client():
    from aiohttp import web

    from server.admin import ADMIN_TOKEN, admin_only, refusal

    open_app = web.Application()
    remote = ("192.0.2.10", 5555)
    assert request_from(remote, open_app).remote == "192.0.2.10"
    assert "loopback" in refusal(request_from(remote, open_app))
    assert refusal(request_from(("127.0.0.1", 5555), open_app)) is None
    assert refusal(request_from(("::1", 5555, 0, 0), open_app)) is None
    assert refusal(request_from(("::ffff:192.0.2.10", 5555, 0, 0), open_app)) is not None

    called = []

    @admin_only
    async def handler(request):
        called.append(request)
        return web.json_response({"status": "done"})

    response = await handler(request_from(remote, open_app))
    assert response.status == 403 and not called
    assert json.loads(response.body)["status"] == "error"

    token_app = web.Application()
    token_app[ADMIN_TOKEN] = TOKEN
    assert refusal(request_from(remote, token_app, {"Authorization": f"Bearer {TOKEN}"})) is None
    assert refusal(request_from(remote, token_app)) is not None
    assert refusal(request_from(remote, token_app, {"Authorization": "Bearer wrong"})) is not None
    assert refusal(request_from(("127.0.0.1", 5555), token_app)) is not None, "with a token, loopback needs it too"


# ---------------------------------------------------------------------------------------------
# 6. Limits: the queue cap, retention by count and by age


def test_past_max_queued_a_query_gets_503_with_retry_after(launch, tmp_path):
    server = launch(tmp_path / "state", "--max-queued", "5")
    workers = health(server)["workers"]
    assert len(workers) == 2 and all(is_live_member(pid, server) for pid in workers)
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        ids = [
            server.submit(query, {"question": OBESITY})
            for query in ("states_mean", "best5", "worst5", "global_mean", "diff_from_mean")
        ]
        assert server.get_json("/api/num_jobs") == {"num_jobs": 5}
        status, headers, body = server.fetch("POST", "/api/mean_by_category", {"question": OBESITY})
        assert_unavailable(status, headers, body, "the 6th query with --max-queued 5")
        for job_id in ids:
            assert json_reply(server, "GET", f"/api/get_results/{job_id}") == (200, {"status": "running"})
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    for job_id in ids:
        assert status_of(server, job_id) == "done", job_id
    assert status_of(server, server.submit("mean_by_category", {"question": OBESITY})) == "done"

    assert stop(server) == 0, server.output()
    server.assert_released()


def assert_expired(server, job_ids, timeout_s=5):
    """Each id answers 404 expired (expiry runs at least once a second: poll briefly)."""
    for job_id in job_ids:
        path = f"/api/get_results/{job_id}"
        wait_until(
            lambda path=path: json_reply(server, "GET", path) == (404, EXPIRED),
            timeout_s,
            f"{job_id} answering 404 expired",
        )


def test_keep_results_drops_the_oldest_jobs_and_a_restart_keeps_them_dropped(launch, tmp_path):
    server = launch(tmp_path / "state", "--keep-results", "3")
    ids, bodies = [], {}
    for state in ("Ohio", "Utah", "Guam", "Iowa", "Texas", "Maine"):  # one after the other
        job_id = server.submit("state_mean", {"question": OBESITY, "state": state})
        ids.append(job_id)
        bodies[job_id] = server.result(job_id)
        assert json.loads(bodies[job_id])["status"] == "done"
    assert ids == [f"job_id_{n}" for n in range(1, 7)]

    assert_expired(server, ids[:3])
    for job_id in ids[3:]:
        assert server.result(job_id, timeout=0) == bodies[job_id], job_id
    for never in ("job_id_7", "job_id_999999"):
        assert json_reply(server, "GET", f"/api/get_results/{never}") == (404, INVALID), never
    listed = [next(iter(entry)) for entry in server.get_json("/api/jobs")["data"]]
    assert listed == ids[3:], "/api/jobs still lists expired jobs"

    assert stop(server) == 0, server.output()
    server.assert_released()
    again = launch(tmp_path / "state", "--keep-results", "3")
    for job_id in ids[:3]:
        assert json_reply(again, "GET", f"/api/get_results/{job_id}") == (404, EXPIRED), f"{job_id} after a restart"
    for job_id in ids[3:]:
        assert again.result(job_id, timeout=0) == bodies[job_id], f"{job_id} after a restart"
    assert json_reply(again, "GET", "/api/get_results/job_id_999999") == (404, INVALID)
    assert stop(again) == 0, again.output()


def test_results_ttl_drops_a_result_after_its_time_and_a_restart_keeps_it_dropped(launch, tmp_path):
    server = launch(tmp_path / "state", "--results-ttl", "1")
    job_id = server.submit("global_mean", {"question": OBESITY})
    assert status_of(server, job_id) == "done", "served right after it finished"
    assert_expired(server, [job_id], timeout_s=8)
    assert json_reply(server, "GET", "/api/get_results/job_id_2") == (404, INVALID)
    assert server.get_json("/api/jobs")["data"] == []

    assert stop(server) == 0, server.output()
    server.assert_released()
    # Without a time to live now: only what the journal says keeps the job expired.
    again = launch(tmp_path / "state")
    assert json_reply(again, "GET", f"/api/get_results/{job_id}") == (404, EXPIRED), (
        f"{job_id} came back after a restart"
    )
    assert again.get_json("/api/jobs")["data"] == []
    assert stop(again) == 0, again.output()


# ---------------------------------------------------------------------------------------------
# 7. A pool older than the data sets: uploads and deletes around worker deaths and pool replacements


def worker_deaths(server):
    return [line for line in server.error_lines() if "lestats.supervise: worker(s)" in line]


@pytest.mark.parametrize("pool_started", ["at a restart", "by a ledger restart"])
def test_a_worker_replaced_after_a_delete_lives_and_jobs_on_other_data_sets_end_done(launch, tmp_path, pool_started):
    """A pool hands every worker it starts, replacements too, the data sets of the day it started.
    One of them removed since must not kill the replacement of a killed worker (it was replaced by
    one dying the same way, for ever, and each death failed the jobs in flight on every data set:
    the soak's "died 2 times")."""
    state = tmp_path / "state"
    server = launch(state)
    status, _, reply = upload(server)
    assert (status, json.loads(reply)["dataset"]) == (200, "upload1"), reply
    if pool_started == "at a restart":  # the new pool's workers are handed upload1, restored
        assert stop(server) == 0, server.output()
        server = launch(state)
    else:  # the new pool is started while upload1 exists
        old = ledger_pid(server)
        os.kill(old, signal.SIGKILL)
        assert wait_for_ledger_back(server, old, restarts=1)["jobs"]["pools_replaced"] == 1
    assert server.fetch("DELETE", "/api/datasets/upload1")[0] == 200

    killed = next(pid for pid in health(server)["workers"] if is_live_member(pid, server))
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: worker_deaths(server), 10, "the supervisor logging the killed worker")
    wait_until(
        lambda: len(workers := health(server)["workers"]) == 2 and killed not in workers,
        20,
        "two workers again after one was killed",
    )
    questions, states = catalog(server)
    rng = random.Random(7)
    jobs = server.submit_all([random_query(rng, questions, states) for _ in range(40)])
    failed = {job_id: reply for job_id in jobs if (reply := json.loads(server.result(job_id)))["status"] != "done"}
    assert not failed, f"{len(failed)} of {len(jobs)} jobs on the default data set failed: {list(failed.values())[:3]}"
    assert len(worker_deaths(server)) == 1, diagnosis(server)
    assert "Traceback" not in server.output(), server.output()[-3000:]
    assert stop(server) == 0, server.output()
    server.assert_released()


def held_by(server):
    """(open fds, threads, entries in /dev/shm: data segments and semaphores) of the server process."""
    pid = server.pid
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")), len(segments_of(pid))


def test_a_replaced_pool_gives_back_its_semaphores_pipes_and_threads(launch, tmp_path):
    """Pools replaced one after another (here each time the ledger's manager is killed, with a
    batch in flight that never comes back) release what they held; nothing grows with the count."""
    server = launch(tmp_path / "state")
    assert status_of(server, server.submit("global_mean", {"question": OBESITY})) == "done"
    first = held_by(server)
    held = []
    for replaced in range(1, 5):
        workers = health(server)["workers"]
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # their batch is lost with them: the old pool's cache keeps it
        job_id = server.submit("state_mean", {"question": MUSCLE, "state": "Ohio", "years": [2011, 2011 + replaced]})
        wait_until(lambda: health(server)["jobs"]["batches_in_flight"] == 1, 10, "the batch in flight")
        old = ledger_pid(server)
        os.kill(old, signal.SIGKILL)
        assert wait_for_ledger_back(server, old, restarts=replaced)["jobs"]["pools_replaced"] == replaced
        assert status_of(server, job_id) == "done"
        wait_until(
            lambda gone=workers: not any(is_live_member(pid, server) for pid in gone), 20, "the old workers gone"
        )
        wait_until(
            lambda: held_by(server)[2] == first[2],
            20,
            lambda n=replaced: (
                f"after {n} replaced pools: /dev/shm {segments_of(server.pid)}, at first {first[2]} entries"
            ),
        )
        held.append(held_by(server))
    # A replaced pool kept ~10 pipes and 4 threads; a manager restart may leave a connection.
    (fds, threads, _), (last_fds, last_threads, _) = held[0], held[-1]
    assert last_fds <= fds + 3 and last_threads <= threads + 2, (
        f"(fds, threads, /dev/shm) {first} at first, then {held}"
    )
    assert stop(server) == 0, server.output()
    server.assert_released()
