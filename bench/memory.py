"""Memory: the PSS of our server's whole process tree, per data size and worker count, beside the
bytes of the shared cell arrays.

PSS (proportional set size, /proc/<pid>/smaps_rollup) charges each shared page to the processes
mapping it in equal parts, so the sum over the tree (server, workers, manager, forkserver, resource
tracker) counts the shared arrays and the shared library pages once: it is what the service costs
the machine. Taken once the server is ready, and again after a short closed-loop load run (the
workers have then touched the arrays and the server holds results). The cost of one more worker is
(PSS at the most workers - PSS at the fewest) / (the difference in workers), over the whole tree
and over the workers alone: the server's own PSS varies from run to run by more than a worker costs
(its allocator keeps a varying share of what loading the CSV freed), which the second figure avoids.

    python bench/memory.py [--sizes 18.6k,106k,500k,5m] [--workers 1,4] [--duration 5]
        [--server-args "..."] [--json bench/out/memory.json]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from harness import (
    Server,
    check_exits,
    command_line,
    data_file,
    descendants,
    get_json,
    parse_counts,
    parse_sizes,
    queries_for,
    smaps_rollup,
)
from load import run_load
from report import OUT_DIR, fmt, ratio, table, write_result

ROLES = ("server", "workers", "manager", "forkserver", "resource_tracker", "other")
PHASES = ("ready", "after_load")
SETTLE_S = 1.0
MB = 1024  # the smaps figures are in kB


def role_of(pid: int, server_pid: int, health: dict[str, Any]) -> str:
    """What a process of the tree is: from /api/health where it says, else from its command line."""
    if pid == server_pid:
        return "server"
    if pid in health["workers"]:
        return "workers"
    if pid == health["ledger"].get("pid"):
        return "manager"
    command = command_line(pid)
    return next((role for role in ("forkserver", "resource_tracker") if role in command), "other")


def snapshot(server: Server) -> dict[str, Any]:
    """PSS of every process of the server's tree, summed per role and in all (kB)."""
    health = get_json(server.url + "/api/health")
    processes = []
    for pid in descendants(server.pid):
        figures = smaps_rollup(pid)
        if figures:
            processes.append(
                {
                    "pid": pid,
                    "role": role_of(pid, server.pid, health),
                    "pss_kb": figures["Pss"],
                    "pss_shmem_kb": figures.get("Pss_Shmem", 0),
                    "rss_kb": figures["Rss"],
                }
            )
    by_role = {role: sum(p["pss_kb"] for p in processes if p["role"] == role) for role in ROLES}
    return {
        "pss_kb": sum(p["pss_kb"] for p in processes),
        "pss_shmem_kb": sum(p["pss_shmem_kb"] for p in processes),
        "by_role_kb": by_role,
        "shared_bytes": health["datasets"]["default"]["shared_bytes"],
        "cells": health["datasets"]["default"]["cells"],
        "workers_seen": len(health["workers"]),
        "processes": processes,
    }


def wait_for_workers(server: Server, workers: int, timeout: float = 30.0) -> None:
    """The pool is up before the server answers, but make sure every worker is alive."""
    deadline = time.monotonic() + timeout
    while len(get_json(server.url + "/api/health")["workers"]) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {workers} workers after {timeout} s")
        time.sleep(0.1)


def measure(size: str, workers: int, args: argparse.Namespace) -> tuple[Server, dict[str, Any]]:
    """Start one server, take PSS when ready and after a load run, stop it."""
    path = data_file(size)
    server = Server("ours", path, workers, shlex.split(args.server_args))
    print(f"{size} workers={workers}: starting ...", file=sys.stderr, flush=True)
    with server:
        wait_for_workers(server, workers)
        time.sleep(SETTLE_S)
        ready = snapshot(server)
        report = asyncio.run(run_load(server.url, queries_for(size), args.clients, args.duration, 0.0, 0.0, args.seed))
        time.sleep(SETTLE_S)
        loaded = snapshot(server)
    return server, {
        "size": size,
        "workers": workers,
        "startup_s": server.startup_s,
        "exit_code": server.exit_code,
        "load": report,
        "ready": ready,
        "after_load": loaded,
    }


def per_extra_worker(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and phase: the PSS added by each worker beyond the fewest, whole tree and workers alone."""
    found = []
    for size in dict.fromkeys(run["size"] for run in runs):
        mine = sorted((run for run in runs if run["size"] == size), key=lambda run: run["workers"])
        fewest, most = mine[0], mine[-1]
        if most["workers"] == fewest["workers"]:
            continue
        extra = most["workers"] - fewest["workers"]
        added = {}
        for phase in PHASES:
            added[f"tree_{phase}_kb"] = (most[phase]["pss_kb"] - fewest[phase]["pss_kb"]) / extra
            added[f"workers_{phase}_kb"] = (
                most[phase]["by_role_kb"]["workers"] - fewest[phase]["by_role_kb"]["workers"]
            ) / extra
        found.append({"size": size, "from_workers": fewest["workers"], "to_workers": most["workers"], **added})
    return found


def render(runs: list[dict[str, Any]], extra: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        for phase in PHASES:
            shot = run[phase]
            rows.append(
                [
                    run["size"],
                    str(run["workers"]),
                    phase,
                    fmt(shot["pss_kb"] / MB),
                    *[fmt(shot["by_role_kb"][role] / MB) for role in ROLES[:5]],
                    fmt(shot["pss_shmem_kb"] / MB),
                    fmt(shot["shared_bytes"] / 2**20, 2),
                    fmt(ratio(shot["pss_kb"] * 1024, shot["shared_bytes"]), 0),
                ]
            )
    main_table = table(
        [
            "size",
            "workers",
            "phase",
            "PSS MB",
            "server",
            "workers",
            "manager",
            "forkserver",
            "tracker",
            "shmem PSS",
            "arrays MB",
            "PSS/arrays",
        ],
        rows,
        labels=3,
    )
    extra_rows = [
        [
            item["size"],
            f"{item['from_workers']} -> {item['to_workers']}",
            *[fmt(item[f"{part}_{phase}_kb"] / MB) for part in ("tree", "workers") for phase in PHASES],
        ]
        for item in extra
    ]
    extra_table = table(
        [
            "size",
            "workers",
            "MB per extra worker: tree, ready",
            "tree, after load",
            "workers alone, ready",
            "workers alone, after load",
        ],
        extra_rows,
        labels=2,
    )
    return f"{main_table}\n\n{extra_table}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default="18.6k,106k,500k,5m")
    parser.add_argument("--workers", type=parse_counts, default="1,4", help="worker counts to compare")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load between the two readings")
    parser.add_argument("--server-args", default="", help="extra arguments for `python -m server`")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=OUT_DIR / "memory.json", help="result file")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0:
        parser.error("need clients >= 1, duration > 0")

    servers, runs = [], []
    for size in args.sizes:
        for workers in args.workers:
            server, run = measure(size, workers, args)
            servers.append(server)
            runs.append(run)
    extra = per_extra_worker(runs)
    print(render(runs, extra))
    path = write_result(args.json, vars(args), {"runs": runs, "per_extra_worker": extra})
    print(f"wrote {path}")
    problems = check_exits(servers) + [
        f"{run['size']} workers={run['workers']}: {run['load']['errors']} failed jobs"
        for run in runs
        if run["load"]["errors"]
    ]
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
