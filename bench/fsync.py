"""What `--fsync` costs: jobs/s and latency of our server with each durability setting, side by side.

Each run starts a fresh server (its state dir on the disk that holds the system's temporary
directory; a tmpfs would make every fdatasync free) with the reply cache off, so that every job
goes through a worker and its journal write, drives it with bench/load.py's closed loop, then
stops it with SIGTERM and checks that it exits 0. The settings run round-robin within each repeat,
so drift in the machine's load hits all alike; the summary takes the median of each figure over
the repeats and gives each setting's jobs/s and p99 relative to `off`. The exit status is 1 if a
server failed to stop cleanly or a job failed.

    python bench/fsync.py [--modes always,batch,off] [--size 18.6k] [--workers 2] [--clients 16]
        [--duration 10] [--repeat 3] [--json bench/out/fsync.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import OtherWork, Server, check_exits, data_file, queries_for, wait_until_idle
from load import run_load
from report import OUT_DIR, fmt, percent, ratio, table, write_result

MODES = ("always", "batch", "off")
FIGURES = ("jobs_per_s", "p50_ms", "p99_ms", "other_cpu_during")


def filesystem_of(path: str) -> str:
    """The type of the filesystem mounted deepest above `path` (from /proc/mounts)."""
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if path.startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def measure(mode: str, args: argparse.Namespace) -> tuple[Server, dict[str, Any]]:
    """Start, load, stop one server; the run's figures."""
    extra = ["--fsync", mode, "--cache-entries", "0"]
    server = Server("ours", data_file(args.size), args.workers, extra)
    busy = wait_until_idle(args.idle_wait)
    with server, OtherWork(server.pid) as other:
        report = asyncio.run(
            run_load(server.url, queries_for(args.size), args.clients, args.duration, args.warmup, 0.0, args.seed)
        )
    print(f"  --fsync {mode}: {report['jobs_per_s']} jobs/s, p99 {report['p99_ms']} ms", file=sys.stderr, flush=True)
    return server, {
        "mode": mode,
        "exit_code": server.exit_code,
        "cpu_busy_before": busy,
        "other_cpu_during": other.fraction,
        **report,
    }


def medians(runs: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """Per setting: the median of each figure over the repeats, errors summed, ratios to `off`."""
    found = []
    for mode in modes:
        mine = [run for run in runs if run["mode"] == mode]
        figures = {
            figure: statistics.median(values)
            if (values := [r[figure] for r in mine if r[figure] is not None])
            else None
            for figure in FIGURES
        }
        found.append({"mode": mode, "repeats": len(mine), "errors": sum(r["errors"] for r in mine), **figures})
    off = next((item for item in found if item["mode"] == "off"), None)
    for item in found:
        item["jobs_per_s_vs_off"] = ratio(item["jobs_per_s"], off["jobs_per_s"]) if off else None
        item["p99_vs_off"] = ratio(item["p99_ms"], off["p99_ms"]) if off else None
    return found


def render(summary: list[dict[str, Any]], args: argparse.Namespace, where: str) -> str:
    rows = [
        [
            item["mode"],
            fmt(item["jobs_per_s"], 0),
            fmt(item["p50_ms"]),
            fmt(item["p99_ms"]),
            fmt(item["jobs_per_s_vs_off"], 2),
            fmt(item["p99_vs_off"], 2),
            percent(item["other_cpu_during"]),
            fmt(item["errors"]),
        ]
        for item in summary
    ]
    headers = ["--fsync", "jobs/s", "p50 ms", "p99 ms", "jobs/s vs off", "p99 vs off", "other CPU", "errors"]
    return (
        f"{args.size} rows, {args.workers} workers, {args.clients} clients, {args.duration:g} s each, "
        f"medians of {args.repeat} (state dir on {where})\n" + table(headers, rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help="settings to compare, comma-separated")
    parser.add_argument("--size", default="18.6k", help="data size (as bench/scaling.py)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds run before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (medians are reported)")
    parser.add_argument("--idle-wait", type=float, default=10.0, help="seconds to wait for idle CPUs before a run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=OUT_DIR / "fsync.json", help="result file")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose among {', '.join(MODES)}")
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("need clients >= 1, duration > 0, warmup >= 0, repeat >= 1")
    where = filesystem_of(tempfile.gettempdir())

    runs, servers = [], []
    for repeat in range(args.repeat):
        for mode in modes[repeat % len(modes) :] + modes[: repeat % len(modes)]:
            server, run = measure(mode, args)
            servers.append(server)
            runs.append({"repeat": repeat, **run})
    summary = medians(runs, modes)
    print(render(summary, args, where))
    path = write_result(args.json, {**vars(args), "filesystem": where}, {"runs": runs, "medians": summary})
    print(f"wrote {path}")
    problems = check_exits(servers) + [
        f"--fsync {i['mode']}: {i['errors']} failed jobs" for i in summary if i["errors"]
    ]
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
