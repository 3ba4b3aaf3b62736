"""Scaling out, side by side: jobs/s, latency and server CPU per job for the embedded store with
1..N front-ends, and the Redis store with 1..M nodes (API.md, "Scaling out"; issue 11); beside
them, the floor: an aiohttp server that does no work (bench/nowork_server.py) in 1..K processes on
the port, so what one more process costs even with nothing shared is measured in the same run.

Each configuration starts fresh processes (bench/harness.py's Server; for Redis a redis-server of
its own on a free port, AOF on as in production), drives them with bench/load.py's closed-loop
clients for the measured window, and reads from /proc how much CPU every process of each node's
process group used in that window, divided by the jobs done, and so did the store's own process
(the embedded store's manager process, which is part of the node's; or the redis-server).
With several nodes the clients are split evenly over them (each client keeps to one node, as a
client behind a balancer with keep-alive mostly does); p50/p99 are then the worse of the nodes'.
Configurations run round-robin --repeat times (load drift hits all alike); medians are reported.

The projection to a bigger machine: a node's CPU per job says how many jobs/s C cores can serve,
C / (CPU per job), as long as nothing on one core caps it first: the store (Redis, or the embedded
store's manager process: 1 / its CPU per job) or, with one front-end, its event loop.

    python bench/scaleout.py                       # this machine: embedded x1, x2; Redis 1, 2 nodes;
                                                   # no-work aiohttp in 1, 2 processes
    python bench/scaleout.py --frontends 1,2,4,8,16 --nodes 1,2,4 --clients 128 --client-procs 8 \\
        --cores 64                                 # the scaling curve on a big machine
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import redis
from harness import HOST, Server, _all_pids, _stat_fields, data_file, free_port, get_json, wait_until_idle
from load import Query, run_load, valid_queries
from report import OUT_DIR, fmt, ratio, table, write_result

REDIS_OPTIONS = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "")
FIGURES = ("jobs_per_s", "p50_ms", "p99_ms", "polls_per_job", "node_cpu_ms_per_job", "serial_cpu_ms_per_job")


class Setup(NamedTuple):
    store: str  # "embedded", "redis", or "nowork" (no store: bench/nowork_server.py)
    frontends: int  # per node (for "nowork": its processes)
    nodes: int

    @property
    def label(self) -> str:
        if self.store == "nowork":
            return f"aiohttp doing no work, {self.frontends} process{'es' if self.frontends > 1 else ''}"
        if self.store == "embedded":
            return f"embedded, {self.frontends} front-end{'s' if self.frontends > 1 else ''}"
        return f"Redis, {self.nodes} node{'s' if self.nodes > 1 else ''} x {self.frontends} front-end"


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one process, with its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class RedisProcess:
    """A redis-server of the benchmark's own (free port, scratch dir, AOF everysec)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--dir", self._dir.name, *REDIS_OPTIONS],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(host=HOST, port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._dir.cleanup()


def _client_process(urls: list[str], queries: list[Query], clients: int, args: tuple[float, float, int]) -> Any:
    """One load process: its clients split over `urls`; one report per URL."""
    duration, warmup, seed = args

    async def drive() -> list[dict[str, Any]]:
        share = [clients // len(urls) + (index < clients % len(urls)) for index in range(len(urls))]
        return await asyncio.gather(
            *(
                run_load(url, queries, n, duration, warmup, 0.0, seed + index)
                for index, (url, n) in enumerate(zip(urls, share, strict=True))
                if n
            )
        )

    return asyncio.run(drive())


def measure(setup: Setup, data: Path, queries: list[Query], args: argparse.Namespace) -> dict[str, Any]:
    """Start the setup, load it, read the CPU of its processes over the measured window, stop it."""
    store = RedisProcess() if setup.store == "redis" else None
    workers = max(1, args.workers // setup.nodes)
    if setup.store == "nowork":
        servers = [Server("nowork", data, extra_args=["--processes", str(setup.frontends)])]
    else:
        extra = ["--frontends", str(setup.frontends), "--poll-grace-ms", "10"]
        if store is not None:
            extra += ["--store", store.url]
        servers = [
            Server("ours", data, workers, [*extra, *(["--node", f"n{index}"] if store else [])])
            for index in range(setup.nodes)
        ]
    try:
        for server in servers:
            server.start()
        wait_until_idle(args.idle_wait)
        urls = [server.url for server in servers]
        pool = multiprocessing.get_context("spawn").Pool(args.client_procs)
        clients = [
            args.clients // args.client_procs + (index < args.clients % args.client_procs)
            for index in range(args.client_procs)
        ]
        pending = [
            pool.apply_async(_client_process, (urls, queries, n, (args.duration, args.warmup, args.seed + 97 * index)))
            for index, n in enumerate(clients)
        ]
        time.sleep(args.warmup)
        started = time.monotonic()
        node_cpu = sum(group_cpu_s(server.pid) for server in servers)
        serial_pid = serial_process(setup, servers[0], store)
        serial_cpu = process_cpu_s(serial_pid) if serial_pid else 0.0
        time.sleep(args.duration)
        node_cpu = sum(group_cpu_s(server.pid) for server in servers) - node_cpu
        serial_cpu = (process_cpu_s(serial_pid) - serial_cpu) if serial_pid else 0.0
        window = time.monotonic() - started
        reports = [report for result in pending for report in result.get(timeout=args.duration + 120)]
        pool.close()
        pool.join()
    finally:
        for server in servers:
            server.stop()
        if store is not None:
            store.stop()
    jobs = sum(report["jobs"] for report in reports)
    per_job = jobs * window / args.duration  # the jobs done in the CPU window
    return {
        **setup._asdict(),
        "label": setup.label,
        "workers_per_node": workers,
        "jobs": jobs,
        "errors": sum(report["errors"] for report in reports),
        "jobs_per_s": round(jobs / args.duration, 1),
        "p50_ms": max(report["p50_ms"] or 0 for report in reports),
        "p99_ms": max(report["p99_ms"] or 0 for report in reports),
        "polls_per_job": max(report["polls_per_job"] or 0 for report in reports),
        "node_cpu_ms_per_job": round(node_cpu * 1000 / per_job, 4) if jobs else None,
        "serial_cpu_ms_per_job": round(serial_cpu * 1000 / per_job, 4) if jobs and serial_pid else None,
    }


def serial_process(setup: Setup, server: Server, store: RedisProcess | None) -> int | None:
    """The store's process, whose CPU is reported on its own: redis-server, or the embedded
    store's manager process; the no-work server has none."""
    if store is not None:
        return store.proc.pid
    if setup.store == "nowork":
        return None
    return int(get_json(server.url + "/api/health")["ledger"]["pid"])


def medians(runs: list[dict[str, Any]], setups: list[Setup], cores: int) -> list[dict[str, Any]]:
    found = []
    base = None
    for setup in setups:
        mine = [run for run in runs if Setup(run["store"], run["frontends"], run["nodes"]) == setup]
        item: dict[str, Any] = {
            "label": setup.label,
            "repeats": len(mine),
            "errors": sum(run["errors"] for run in mine),
        }
        for figure in FIGURES:
            values = [run[figure] for run in mine if run[figure] is not None]
            item[figure] = statistics.median(values) if values else None
        base = base or item
        item["jobs_vs_first"] = ratio(item["jobs_per_s"], base["jobs_per_s"])
        item["cpu_vs_first"] = ratio(item["node_cpu_ms_per_job"], base["node_cpu_ms_per_job"])
        item["projected_jobs_per_s"] = projection(setup, item, cores)
        found.append(item)
    return found


def projection(setup: Setup, item: dict[str, Any], cores: int) -> int | None:
    """Jobs/s on `cores` cores: all of them busy at the measured CPU per job (the node's, plus
    Redis's on a core of its own), capped by what runs on one core whatever the machine: the
    store (the shared ledger's manager process, or Redis) and, with one front-end, its event loop
    (taken as the whole node's CPU per job minus the store's, an upper bound)."""
    cpu, serial = item["node_cpu_ms_per_job"], item["serial_cpu_ms_per_job"]
    if not cpu or not serial:
        return None
    if setup.store == "redis":
        return round(min(cores * 1000 / (cpu + serial), 1000 / serial))
    one_core = 1000 / serial
    if setup.frontends == 1:
        one_core = min(one_core, 1000 / max(cpu - serial, 1e-3))
    return round(min(cores * 1000 / cpu, one_core))


def render(summary: list[dict[str, Any]], cores: int) -> str:
    rows = [
        [
            item["label"],
            str(item["repeats"]),
            fmt(item["jobs_per_s"]),
            fmt(item["p50_ms"]),
            fmt(item["p99_ms"]),
            fmt(item["polls_per_job"], 2),
            fmt(item["node_cpu_ms_per_job"], 3),
            fmt(item["serial_cpu_ms_per_job"], 3),
            fmt(item["jobs_vs_first"], 2),
            fmt(item["cpu_vs_first"], 2),
            fmt(item["projected_jobs_per_s"], 0),
            str(item["errors"]),
        ]
        for item in summary
    ]
    headers = ["setup", "runs", "jobs/s", "p50 ms", "p99 ms", "polls/job", "node CPU ms/job", "store CPU ms/job"]
    headers += ["jobs/s vs first", "CPU/job vs first", f"projected jobs/s, {cores} cores", "errors"]
    return table(headers, rows)


def counts(text: str) -> list[int]:
    """A comma-separated list of positive counts, possibly empty."""
    found = [int(part) for part in text.split(",") if part.strip()]
    if any(count < 1 for count in found):
        raise argparse.ArgumentTypeError(f"{text!r}: each count must be at least 1")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="CSV (default: the bundled sample)")
    parser.add_argument("--frontends", type=counts, default="1,2", help="embedded-store front-end counts ('' for none)")
    parser.add_argument("--nodes", type=counts, default="1,2", help="Redis-store node counts ('' for none)")
    parser.add_argument("--node-frontends", type=int, default=1, help="front-ends per Redis node")
    parser.add_argument(
        "--nowork", type=counts, default="1,2", help="process counts of the no-work aiohttp floor ('' for none)"
    )
    parser.add_argument("--workers", type=int, default=2, help="pool processes per machine (split over nodes)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--client-procs", type=int, default=1, help="load processes (one Python client caps ~2k jobs/s)"
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle-wait", type=float, default=5.0)
    parser.add_argument("--cores", type=int, default=16, help="cores of the machine to project to")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "scaleout.json", help="where the figures go")
    args = parser.parse_args()

    data = args.data or data_file("18.6k")
    queries = valid_queries(data)
    setups = [Setup("embedded", count, 1) for count in args.frontends]
    setups += [Setup("redis", args.node_frontends, count) for count in args.nodes]
    setups += [Setup("nowork", count, 1) for count in args.nowork]
    runs = []
    for repeat in range(args.repeat):
        for setup in setups:
            print(f"[{repeat + 1}/{args.repeat}] {setup.label} ...", file=sys.stderr, flush=True)
            run = measure(setup, data, queries, args)
            print(f"  {run['jobs_per_s']} jobs/s, {run['node_cpu_ms_per_job']} ms CPU/job", file=sys.stderr, flush=True)
            runs.append(run)
    summary = medians(runs, setups, args.cores)
    text = render(summary, args.cores)
    print(text)
    path = write_result(
        args.json, {**vars(args), "data": str(data), "json": str(args.json)}, {"runs": runs, "summary": summary}
    )
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
