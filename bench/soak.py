"""A soak: minutes of mixed load on one server, watching every resource that could leak.

The load, all at once: closed-loop clients posting every kind of query (bench/load.py) and polling
for the result; long-polls (`get_results?wait=5`); reads of old ids, some long expired (404); an
upload of a small CSV every few seconds, queried, then deleted; `/api/jobs`; and a worker
SIGKILLed every `--kill-every` seconds. Retention is small (`--keep-results`), so expiry and
journal compaction run many times.

Every `--interval` seconds it samples, per role (server, workers summed, manager, forkserver,
resource tracker): RSS and PSS, open fds and threads; and the journal's size, the rest of the state
dir, the log's size, and the files and bytes of the server's own entries in /dev/shm. At the end it
prints, for each figure, its level after the warm-up (the median of the middle third), the median
of the last third, the slope per hour of a least-squares line over the samples after the warm-up
(the first third), and a verdict: a figure "grows" when the last third's median is above the
middle third's by more than a slack (a sawtooth such as the journal between compactions, spikes
such as the sockets of a burst of connections, or a plateau pass; a steady climb does not). The log
is bounded by its rotation instead (20 MiB x 6 files), which a 10-minute run does not fill: it
passes while below that bound.
It then stops the server with SIGTERM and checks it exits 0 and leaves no process. The exit status
is 1 if a figure grows, a job failed, or the stop was not clean.

    python bench/soak.py [--minutes 10] [--interval 5] [--clients 6] [--kill-every 90]
        [--keep-results 5000] [--json bench/out/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from harness import Server, check_exits, data_file, descendants, queries_for, smaps_rollup
from load import JOB_ERRORS, group_by_name, run_job
from memory import role_of
from report import OUT_DIR, fmt, table, write_result

ROLES = ("server", "workers", "manager", "forkserver", "resource_tracker")
KINDS = ("rss_mb", "pss_mb", "fds", "threads")
SHM = Path("/dev/shm")
MB = 2**20
# How much higher the last third's peak may be than the middle third's, per kind of figure:
# (fraction of the level, absolute).
SLACK = {"rss_mb": (0.05, 8.0), "pss_mb": (0.05, 8.0), "fds": (0.0, 4), "threads": (0.0, 3), "mb": (0.10, 8.0)}
SLACK_FILES = (0.0, 2)
LOG_BOUND_MB = 6 * 20  # server/logs.py: 20 MiB, 5 backups
UPLOAD = b"LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1,YearStart,YearEnd\n" + b"".join(
    f"{state},Share of people who soak,{10 + n % 7}.5,Total,Total,{2011 + n % 5},{2011 + n % 5}\n".encode()
    for n, state in enumerate(["Ohio", "Utah", "Texas", "Maine"] * 25)
)


def count_of(path: str, key: str | None = None) -> int:
    """Entries of a /proc directory, or the number after `key:` in a /proc status file."""
    try:
        if key is None:
            return len(os.listdir(path))
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def size_of(paths: list[Path]) -> int:
    """Bytes of the files among `paths`; one removed meanwhile (a deleted upload) counts 0."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size if path.is_file() else 0
    return total


def sample(server: Server, health: dict[str, Any], state_dir: Path) -> dict[str, float]:
    """One row of figures; "<role>.<kind>" summed over the role's processes."""
    row: dict[str, float] = {f"{role}.{kind}": 0.0 for role in ROLES for kind in KINDS}
    for pid in descendants(server.pid):
        role = role_of(pid, server.pid, health)
        figures = smaps_rollup(pid)
        if role not in ROLES or not figures:
            continue
        row[f"{role}.rss_mb"] += figures["Rss"] / 1024
        row[f"{role}.pss_mb"] += figures["Pss"] / 1024
        row[f"{role}.fds"] += count_of(f"/proc/{pid}/fd")
        row[f"{role}.threads"] += count_of(f"/proc/{pid}/status", "Threads")
    own = [entry for entry in SHM.iterdir() if entry.name.removeprefix("sem.").startswith(f"lestats_{server.pid}_")]
    row["journal.mb"] = health["ledger"]["journal_bytes"] / MB
    files = list(state_dir.rglob("*"))
    logs = [path for path in files if path.name.startswith("webserver.log")]
    row["state_dir_but_log.mb"] = (size_of(files) - size_of(logs)) / MB
    row["log.mb"] = size_of(logs) / MB
    row["dev_shm.files"] = len(own)
    row["dev_shm.mb"] = size_of(own) / MB
    row["kept_results.mb"] = health["jobs"]["kept_bytes"] / MB
    return row


def slope_per_hour(times: list[float], values: list[float]) -> float:
    if len(times) < 2 or len(set(times)) < 2:
        return 0.0
    return statistics.linear_regression(times, values).slope * 3600


def judge(name: str, times: list[float], values: list[float]) -> dict[str, Any]:
    """The figure's level, the last third's median, slope per hour after the warm-up, and whether
    it grows."""
    third = max(len(values) // 3, 1)
    middle, last = values[third : 2 * third] or values, values[2 * third :] or values
    kind = name.split(".", 1)[1]
    fraction, absolute = SLACK_FILES if name == "dev_shm.files" else SLACK.get(kind, SLACK["mb"])
    level, final = statistics.median(middle), statistics.median(last)
    grows = max(last) > LOG_BOUND_MB if name == "log.mb" else final > level * (1 + fraction) + absolute
    return {
        "figure": name,
        "level": level,
        "last": final,
        "slope_per_hour": slope_per_hour(times[third:], values[third:]),
        "grows": grows,
    }


class Mix:
    """The load; `counts` tallies what was done, `failures` what went wrong."""

    def __init__(self, server: Server, args: argparse.Namespace) -> None:
        self.base = server.url
        self.server = server
        self.args = args
        self.kinds = group_by_name(self.base, queries_for(args.size))
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.highest_id = 0

    async def run(self, stop_at: float) -> None:
        connector = aiohttp.TCPConnector(limit=self.args.clients + 8)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            rng = random.Random(self.args.seed)
            duties = [self.queries(session, random.Random(rng.random()), stop_at) for _ in range(self.args.clients)]
            duties += [
                self.long_polls(session, random.Random(rng.random()), stop_at),
                self.old_reads(session, random.Random(rng.random()), stop_at),
                self.uploads(session, stop_at),
                self.job_lists(session, stop_at),
                self.worker_kills(random.Random(rng.random()), stop_at),
            ]
            await asyncio.gather(*duties)

    async def queries(self, session: aiohttp.ClientSession, rng: random.Random, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            url, body = rng.choice(rng.choice(self.kinds))
            try:
                await run_job(session, self.base, url, body, 0.0)
                self.counts["query"] += 1
            except JOB_ERRORS as error:
                self.failures[f"query: {type(error).__name__}: {error}"[:120]] += 1

    async def long_polls(self, session: aiohttp.ClientSession, rng: random.Random, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            url, body = rng.choice(rng.choice(self.kinds))
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                job_id = orjson.loads(await response.read())["job_id"]
            self.highest_id = max(self.highest_id, int(job_id.removeprefix("job_id_")))
            async with session.get(f"{self.base}/api/get_results/{job_id}?wait=5") as response:
                reply = orjson.loads(await response.read())
            # "running" after the 5 s wait is the contract too (a machine loaded beyond the load)
            self.tally("long-poll", response.status == 200 and reply["status"] in ("done", "running"), reply)

    async def old_reads(self, session: aiohttp.ClientSession, rng: random.Random, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(0.05)
            if self.highest_id < 2:
                continue
            job_id = rng.randint(1, self.highest_id)
            async with session.get(f"{self.base}/api/get_results/job_id_{job_id}") as response:
                reply = orjson.loads(await response.read())
            kept = response.status == 200 and reply["status"] in ("done", "running")  # a recent id may still run
            self.tally("old read", kept or (response.status == 404 and reply["reason"] == "expired"), reply)

    async def uploads(self, session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(3)
            headers = {"Content-Type": "text/csv"}
            async with session.post(f"{self.base}/api/datasets", data=UPLOAD, headers=headers) as response:
                dataset = orjson.loads(await response.read()).get("dataset")
            if response.status != 200 or not dataset:
                self.tally("upload", False, response.status)
                continue
            body = orjson.dumps({"question": "Share of people who soak", "dataset": dataset})
            try:
                await run_job(session, self.base, f"{self.base}/api/states_mean", body, 0.01)
            except JOB_ERRORS as error:
                self.tally("upload query", False, error)
            async with session.delete(f"{self.base}/api/datasets/{dataset}") as response:
                self.tally("upload and delete", response.status == 200, response.status)

    async def job_lists(self, session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(10)
            async with session.get(f"{self.base}/api/jobs") as response:
                await response.read()
            self.tally("job list", response.status == 200, response.status)

    async def worker_kills(self, rng: random.Random, stop_at: float) -> None:
        while time.monotonic() + self.args.kill_every < stop_at:
            await asyncio.sleep(self.args.kill_every)
            async with aiohttp.ClientSession() as session, session.get(f"{self.base}/api/health") as response:
                workers = (await response.json())["workers"]
            os.kill(rng.choice(workers), signal.SIGKILL)
            self.counts["worker killed"] += 1

    def tally(self, what: str, ok: bool, detail: object) -> None:
        if ok:
            self.counts[what] += 1
        else:
            self.failures[f"{what}: {detail}"[:120]] += 1


async def soak(server: Server, args: argparse.Namespace, state_dir: Path) -> tuple[list[dict[str, float]], Mix]:
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    mix = Mix(server, args)
    load = asyncio.create_task(mix.run(stop_at))
    samples = []
    async with aiohttp.ClientSession() as session:
        while not load.done():
            async with session.get(f"{server.url}/api/health") as response:
                health = await response.json()
            row = await asyncio.to_thread(sample, server, health, state_dir)
            samples.append({"t_s": round(time.monotonic() - started, 1), **row})
            print(
                f"  {samples[-1]['t_s']:6.0f} s  server {row['server.rss_mb']:.0f} MB, "
                f"{row['server.fds']:.0f} fds; journal {row['journal.mb']:.1f} MB; "
                f"{sum(mix.counts.values())} done, {sum(mix.failures.values())} failed",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.wait([load], timeout=args.interval)
    await load
    return samples, mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--size", default="18.6k", help="data size (as bench/scaling.py)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=6, help="closed-loop query clients")
    parser.add_argument("--kill-every", type=float, default=90.0, help="seconds between worker kills")
    parser.add_argument("--keep-results", type=int, default=5000, help="the server's --keep-results")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=OUT_DIR / "soak.json", help="result file")
    args = parser.parse_args()
    if args.minutes <= 0 or args.interval <= 0 or args.clients < 1 or args.kill_every <= 0:
        parser.error("need minutes, interval and kill-every > 0, clients >= 1")

    server = Server("ours", data_file(args.size), args.workers, ["--keep-results", str(args.keep_results)])
    server.start()
    try:
        samples, mix = asyncio.run(soak(server, args, server.state_dir))
    except BaseException:
        server.kill()
        raise
    exit_code = server.stop()

    times = [row["t_s"] for row in samples]
    figures = [name for name in samples[0] if name != "t_s"]
    verdicts = [judge(name, times, [row[name] for row in samples]) for name in figures]
    rows = [
        [
            v["figure"],
            fmt(v["level"], 1),
            fmt(v["last"], 1),
            fmt(v["slope_per_hour"], 2),
            "GROWS" if v["grows"] else "ok",
        ]
        for v in verdicts
    ]
    print(
        f"{args.minutes:g} minutes, {len(samples)} samples every {args.interval:g} s; "
        "the first third is warm-up; level: median of the middle third; last: median of the last third\n"
        + table(["figure", "level", "last", "slope per hour", "verdict"], rows)
    )
    print("done: " + ", ".join(f"{count} {what}" for what, count in sorted(mix.counts.items())))
    if mix.failures:
        print("failed: " + "; ".join(f"{count} x {what}" for what, count in mix.failures.most_common(10)))
    print(f"exit code after SIGTERM: {exit_code}")
    results = {"samples": samples, "verdicts": verdicts, "counts": mix.counts, "failures": mix.failures}
    print(f"wrote {write_result(args.json, vars(args), results)}")
    problems = [f"{v['figure']} grows" for v in verdicts if v["grows"]] + check_exits([server])
    problems += [f"{sum(mix.failures.values())} failed requests"] if mix.failures else []
    if problems:
        sys.exit("; ".join(problems))


if __name__ == "__main__":
    main()
