"""End-to-end scaling over HTTP: our server per data size and worker count, beside the original
design (bench/original.py) and the no-work ceiling (bench/nowork_server.py).

Each run starts a fresh server process, times process start -> first 200 on GET /api/num_jobs
(start-up: reading the CSV and reducing it to cells, for ours), drives it with bench/load.py's
closed loop (16 clients by default), then stops it with SIGTERM and checks that it exits 0. CPU per
job is the CPU time (user + system, from /proc) of the server's whole process group during the
measured window, divided by the jobs finished in it: what a job costs the server, whatever the
number of cores it spread over ("cores" is that CPU time over the window's length). With
--repeat N every configuration runs N times, round-robin (so drift in the machine's load hits all
alike), and the summary takes the median of each figure over the repeats. The ratios ours /
original and ours / no-work (jobs/s, CPU per job, p50, p99) are taken from those medians at the
sizes both ran. "other CPU" is the share of the CPUs used during the run by work other than the
server's tree and this client. The exit status is 1 if any server failed to stop cleanly or any job failed.

    python bench/scaling.py [--sizes 18.6k,106k,500k,5m] [--workers 1,2] [--duration 15] [--repeat 1]
        [--original-sizes 18.6k,500k] [--original-duration 10] [--nowork-sizes 18.6k]
        [--server-args "--poll-grace-ms 0" [--server-args "--loop asyncio" ...]] [--json bench/out/scaling.json]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from harness import (
    OtherWork,
    Server,
    check_exits,
    data_file,
    group_cpu_s,
    parse_counts,
    parse_sizes,
    queries_for,
    wait_until_idle,
)
from load import Query, run_load
from report import OUT_DIR, fmt, percent, ratio, table, write_result

FIGURES = ("startup_s", "jobs_per_s", "cpu_us_per_job", "server_cores", "p50_ms", "p99_ms", "other_cpu_during")
COMPARED = ("jobs_per_s", "cpu_us_per_job", "p50_ms", "p99_ms")


class Config(NamedTuple):
    """One configuration: which server, on which data, with how many workers, for how long."""

    server: str
    size: str
    workers: int
    duration: float


def config_of(run: dict[str, Any]) -> Config:
    return Config(*(run[name] for name in Config._fields))


def plan(args: argparse.Namespace) -> list[Config]:
    """Every configuration, in order: ours per size and worker count, then the baselines."""
    configs = [
        Config(f"ours {extra}".strip(), size, workers, args.duration)
        for size in args.sizes
        for workers in args.workers
        for extra in args.server_args or [""]
    ]
    configs += [Config("original", size, args.original_threads, args.original_duration) for size in args.original_sizes]
    configs += [Config("nowork", size, 0, args.duration) for size in args.nowork_sizes]
    return configs


def measure(config: Config, args: argparse.Namespace) -> tuple[Server, dict[str, Any]]:
    """Start, load, stop one server; the run's figures."""
    queries = queries_for(config.size)
    kind, _, extra = config.server.partition(" ")
    server = Server(kind, data_file(config.size), config.workers, shlex.split(extra))
    busy = wait_until_idle(args.idle_wait)
    print(f"{config.server} {config.size} workers={config.workers}: starting ...", file=sys.stderr, flush=True)
    with server, OtherWork(server.pid) as other:
        report, cpu_s = asyncio.run(load_and_cpu(server, queries, config.duration, args))
    jobs = report["jobs"]
    cpu_us_per_job = round(cpu_s / jobs * 1e6, 1) if jobs else None
    print(
        f"  ready in {server.startup_s:.2f} s, {report['jobs_per_s']} jobs/s, {cpu_us_per_job} us CPU per job,"
        f" exit {server.exit_code}",
        file=sys.stderr,
        flush=True,
    )
    return server, {
        **config._asdict(),
        "startup_s": server.startup_s,
        "exit_code": server.exit_code,
        "cpu_busy_before": busy,
        "other_cpu_during": other.fraction,
        "cpu_us_per_job": cpu_us_per_job,
        "server_cores": round(cpu_s / config.duration, 3),
        **report,
    }


async def load_and_cpu(
    server: Server, queries: list[Query], duration: float, args: argparse.Namespace
) -> tuple[dict[str, Any], float]:
    """The load run's report, and the CPU seconds the server's whole process group used in its
    measured window (from /proc, read when the window opens and when it closes)."""

    async def window_cpu() -> float:
        await asyncio.sleep(args.warmup)
        before = group_cpu_s(server.pid)
        await asyncio.sleep(duration)
        return group_cpu_s(server.pid) - before

    return await asyncio.gather(
        run_load(server.url, queries, args.clients, duration, args.warmup, args.poll_interval, args.seed),
        window_cpu(),
    )


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: the median of each figure over its repeats, errors summed."""
    found = []
    for config in dict.fromkeys(map(config_of, runs)):
        mine = [run for run in runs if config_of(run) == config]
        figures = {
            figure: statistics.median(values)
            if (values := [run[figure] for run in mine if run[figure] is not None])
            else None
            for figure in FIGURES
        }
        found.append(
            {**config._asdict(), "repeats": len(mine), "errors": sum(run["errors"] for run in mine), **figures}
        )
    return found


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / baseline for jobs/s, CPU per job, p50 and p99, at each size and worker count both ran."""
    baselines = {(item["server"], item["size"]): item for item in summary if not item["server"].startswith("ours")}
    found = []
    for versus in ("original", "nowork"):
        for item in summary:
            base = baselines.get((versus, item["size"]))
            if item["server"].startswith("ours") and base:
                found.append(
                    {
                        "server": item["server"],
                        "size": item["size"],
                        "workers": item["workers"],
                        "versus": versus,
                        **{figure: ratio(item[figure], base[figure]) for figure in COMPARED},
                    }
                )
    return found


def concurrency(server: str, workers: int) -> str:
    """Worker processes for ours, threads for the original, nothing for the no-work server."""
    return {"ours": str(workers), "original": f"{workers} threads"}.get(server.split()[0], "-")


# The columns of the per-run and the median tables: (header, cell of a run or of a median row).
# A column named only in RUN_ONLY or MEDIAN_ONLY appears in that table alone.
Column = tuple[str, Callable[[dict[str, Any]], str]]
COLUMNS: list[Column] = [
    ("server", lambda row: row["server"]),
    ("size", lambda row: row["size"]),
    ("workers", lambda row: concurrency(row["server"], row["workers"])),
    ("runs", lambda row: str(row["repeats"])),
    ("measured s", lambda row: fmt(row["duration"], 0)),
    ("startup s", lambda row: fmt(row["startup_s"], 2)),
    ("jobs/s", lambda row: fmt(row["jobs_per_s"])),
    ("CPU us/job", lambda row: fmt(row["cpu_us_per_job"], 0)),
    ("cores", lambda row: fmt(row["server_cores"], 2)),
    ("p50 ms", lambda row: fmt(row["p50_ms"])),
    ("p99 ms", lambda row: fmt(row["p99_ms"])),
    ("errors", lambda row: str(row["errors"])),
    ("exit", lambda row: str(row["exit_code"])),
    ("other CPU", lambda row: percent(row["other_cpu_during"])),
]
RUN_ONLY = {"exit"}
MEDIAN_ONLY = {"runs", "measured s"}


def columns_table(rows: list[dict[str, Any]], leave_out: set[str]) -> str:
    columns = [column for column in COLUMNS if column[0] not in leave_out]
    cells = [[cell(row) for _, cell in columns] for row in rows]
    return table([header for header, _ in columns], cells, labels=3)


def render(runs: list[dict[str, Any]], summary: list[dict[str, Any]], found: list[dict[str, Any]]) -> str:
    runs_table = columns_table(runs, MEDIAN_ONLY)
    summary_table = columns_table(summary, RUN_ONLY)
    ratio_rows = [
        [
            f"{item['server']} / {item['versus']}",
            item["size"],
            str(item["workers"]),
            fmt(item["jobs_per_s"], 2),
            fmt(item["cpu_us_per_job"], 2),
            fmt(item["p50_ms"], 3),
            fmt(item["p99_ms"], 3),
        ]
        for item in found
    ]
    ratio_table = table(["ratio", "size", "workers", "jobs/s", "CPU/job", "p50", "p99"], ratio_rows, labels=2)
    return f"every run:\n{runs_table}\n\nmedian over repeats:\n{summary_table}\n\nratios of the medians:\n{ratio_table}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default="18.6k,106k,500k,5m", help="sizes for our server")
    parser.add_argument("--workers", type=parse_counts, default="1,2", help="worker counts for our server")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds run before measuring")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (medians are reported)")
    parser.add_argument("--poll-interval", type=float, default=0.0, help="seconds between a client's polls")
    parser.add_argument("--original-sizes", type=parse_sizes, default="18.6k,500k", help="'' to skip the original")
    parser.add_argument("--original-duration", type=float, default=10.0, help="measured seconds for the original")
    parser.add_argument("--original-threads", type=int, default=2, help="the original's worker threads")
    parser.add_argument("--nowork-sizes", type=parse_sizes, default="18.6k", help="'' to skip the no-work server")
    parser.add_argument(
        "--server-args",
        action="append",
        help="extra arguments for `python -m server` (ours only); given several times, ours runs once with each",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=30.0,
        help="seconds to wait, before each run, for other work to leave the CPUs idle",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=OUT_DIR / "scaling.json", help="result file")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.original_duration <= 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("need clients >= 1, durations > 0, warmup >= 0, repeat >= 1")

    runs, servers = [], []
    for repeat in range(args.repeat):
        for config in plan(args):
            server, run = measure(config, args)
            servers.append(server)
            runs.append({"repeat": repeat, **run})
    summary = medians(runs)
    found = ratios(summary)
    print(render(runs, summary, found))
    path = write_result(args.json, vars(args), {"runs": runs, "medians": summary, "ratios": found})
    print(f"wrote {path}")
    problems = check_exits(servers) + [
        f"{item['server']} {item['size']} workers={item['workers']}: {item['errors']} failed jobs"
        for item in summary
        if item["errors"]
    ]
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
