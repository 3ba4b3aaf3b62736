"""Where a job's CPU goes: py-spy samples of our server's whole tree under load, per process, thread
and part of the hot path, in microseconds per job.

It starts our server (`python -m server`, options from --server-args), drives it with bench/load.py's
closed loop, and while the load runs records the tree with `py-spy record --subprocesses --gil
--nonblocking` (only the thread holding each process's GIL is sampled, so a sample is Python work
that process did). Each sample goes to the part of the path named by the innermost frame of a file
listed in PARTS (the leaf-most known file: time spent building a response inside aiohttp counts as
aiohttp, even when our handler called it). Jobs are counted from the job ids handed out before and
after the recording. Needs py-spy (`pip install py-spy`) and permission to ptrace the server.

    python bench/profile.py [--server ours|nowork] [--size 18.6k] [--workers 2] [--clients 16] [--duration 8]
        [--rate 250] [--server-args "..."] [--out bench/out/profile]

It writes the raw collapsed stacks (OUT.raw.txt) and the table (OUT.txt), and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
from harness import Server, data_file, get_json, queries_for
from load import run_load
from report import OUT_DIR, table

# (file path fragment, part of the path); the innermost frame that matches one of them names the part.
PARTS = (
    ("server/middleware.py", "middlewares"),
    ("server/logs.py", "call log / logging"),
    ("logging/", "call log / logging"),
    ("server/validation.py", "validation"),
    ("server/jobs.py", "job table"),
    ("server/answers.py", "answer cache"),
    ("compute/dispatch.py", "dispatcher"),
    ("server/routes.py", "route handlers"),
    ("server/hot_routes.py", "route handlers"),
    ("server/fastpath.py", "fast path (parse, reply)"),
    ("server/rawhttp.py", "fast path (parse, reply)"),
    ("server/supervise.py", "supervisor duties"),
    ("aiohttp/web_protocol.py", "aiohttp parse/protocol"),
    ("aiohttp/http_parser.py", "aiohttp parse/protocol"),
    ("aiohttp/streams.py", "aiohttp parse/protocol"),
    ("aiohttp/base_protocol.py", "aiohttp parse/protocol"),
    ("aiohttp/web_response.py", "aiohttp respond"),
    ("aiohttp/http_writer.py", "aiohttp respond"),
    ("aiohttp/helpers.py", "aiohttp respond"),
    ("aiohttp/web_request.py", "aiohttp request/route"),
    ("aiohttp/web_urldispatcher.py", "aiohttp request/route"),
    ("aiohttp/web_app.py", "aiohttp request/route"),
    ("aiohttp/web_middlewares.py", "aiohttp request/route"),
    ("multidict/", "aiohttp request/route"),
    ("yarl/", "aiohttp request/route"),
    ("asyncio/", "event loop"),
    ("aiohttp/web.py", "event loop"),
    ("selectors.py", "event loop"),
    ("uvloop/", "event loop"),
    ("concurrent/futures/", "to_thread"),
    ("threading.py", "threads"),
    ("multiprocessing/pool.py", "pool machinery"),
    ("multiprocessing/connection.py", "pipes and pickling"),
    ("multiprocessing/queues.py", "pipes and pickling"),
    ("multiprocessing/reduction.py", "pipes and pickling"),
    ("multiprocessing/managers.py", "ledger proxy / manager"),
    ("store/ledger.py", "ledger journal"),
    ("compute/worker.py", "worker: batch"),
    ("compute/queries.py", "worker: query kernels"),
    ("store/", "store"),
)

THREAD = re.compile(r"thread \(\d+\): (.*)")
PROCESS = re.compile(r"process (\d+):")


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for fragment, part in PARTS:
            if fragment in frame:
                return part
    return "other"


def role_of(frames: list[str], server_pid: int) -> str:
    """Which process of the tree: the server itself, a pool worker, the ledger's manager, or other."""
    pids = [int(match.group(1)) for frame in frames if (match := PROCESS.match(frame))]
    if pids and pids[-1] == server_pid:
        return "server"
    text = ";".join(frames)
    if "compute/worker.py" in text or "multiprocessing/pool.py" in text:
        return "pool worker"
    if "managers.py" in text:
        return "ledger manager"
    return "other process"


def thread_of(frames: list[str]) -> str:
    names = [match.group(1) for frame in frames if (match := THREAD.match(frame))]
    name = names[-1] if names else "?"
    return re.sub(r"Thread-\d+ |_\d+$|\d+$", "", name)


def summarise(raw: Path, server_pid: int, jobs: int, rate: float) -> tuple[str, dict[str, float]]:
    """The table of microseconds per job by (process, thread, part), and the totals per part."""
    samples: Counter[tuple[str, str, str]] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples[(role_of(frames, server_pid), thread_of(frames), part_of(frames))] += int(count)
    us = 1e6 / rate / jobs
    rows = [[role, thread, part, f"{count * us:,.0f}"] for (role, thread, part), count in samples.most_common()]
    parts: Counter[str] = Counter()
    for (role, _, part), count in samples.items():
        parts[f"{role}: {part}"] += count
    total = sum(samples.values()) * us
    rows.append(["all", "", "", f"{total:,.0f}"])
    return table(["process", "thread", "part", "us/job"], rows, labels=3), {
        key: round(count * us, 1) for key, count in parts.items()
    }


def jobs_issued(server: Server) -> int:
    """Job ids handed out so far: from /api/health (ours), or by asking for a new one (no-work)."""
    if server.kind == "ours":
        return int(get_json(server.url + "/api/health")["jobs"]["next_id"])
    request = urllib.request.Request(
        server.url + "/api/global_mean",
        data=b'{"question": "Percent of adults aged 18 years and older who have obesity"}',
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(orjson.loads(response.read())["job_id"].removeprefix("job_id_"))


async def drive(server: Server, args: argparse.Namespace, raw: Path) -> tuple[int, float]:
    """Load the server; record it for --duration seconds after a warm-up. Jobs and seconds recorded."""
    queries = queries_for(args.size)
    load = asyncio.create_task(
        run_load(server.url, queries, args.clients, args.duration + 3, 1.0, 0.0, args.seed), name="load"
    )
    await asyncio.sleep(2.0)
    before = await asyncio.to_thread(jobs_issued, server)
    started = time.monotonic()
    command = ["py-spy", "record", "-p", str(server.pid), "-s", "--gil", "--nonblocking", "-f", "raw", "--nolineno"]
    command += ["-t", "-r", str(args.rate), "-d", str(args.duration), "-o", str(raw)]
    spy = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, errors = await spy.communicate()
    if spy.returncode:
        raise SystemExit(f"py-spy failed (exit {spy.returncode}): {errors.decode(errors='replace')}")
    after = await asyncio.to_thread(jobs_issued, server)
    seconds = time.monotonic() - started
    await load
    return after - before, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("ours", "nowork"), default="ours", help="the server to profile")
    parser.add_argument("--size", default="18.6k")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=int, default=8, help="seconds recorded")
    parser.add_argument("--rate", type=float, default=250, help="samples per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server-args", default="", help="extra arguments for `python -m server`")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "profile", help="output prefix")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = args.out.with_suffix(".raw.txt")
    extra = shlex.split(args.server_args) if args.server == "ours" else ()
    with Server(args.server, data_file(args.size), args.workers, extra) as server:
        jobs, seconds = asyncio.run(drive(server, args, raw))
    text, _ = summarise(raw, server.pid, jobs, args.rate)
    text = f"{jobs} jobs in {seconds:.1f} s recorded ({jobs / seconds:,.0f} jobs/s)\n{text}"
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
