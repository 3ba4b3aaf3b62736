"""Closed-loop load client for Le Stats Sportif (and for the Flask baseline, bench/original.py).

N clients share one aiohttp session. Each loops: pick one of the 9 query kinds of API.md uniformly,
then a random valid question (and state) for it, POST it, poll get_results until "done", and record
the job latency (POST sent -> done received) and the number of polls. Only queries the data set can
answer are sent, so every error is the server's fault. Jobs started during --warmup are not counted;
no job starts after warmup + duration, and the ones in flight are waited for.

Throughput is the jobs done that started in the measured window, divided by its length: in a closed
loop jobs start as fast as they finish, so that is the completion rate, with no edge effect at either end.

The client is kept light (bodies prebuilt with orjson, one keep-alive session, nothing logged per
request), but on a 2-core machine it still shares the CPU with the server under test: the figures
are for server + client on the same box, comparable between runs on that box only.

Run: python bench/load.py --url http://127.0.0.1:5000 --data FILE.csv --clients 16 --duration 15
         [--poll-interval 0] [--warmup 2] [--seed 1] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from yarl import URL

REQUIRED_COLUMNS = ("LocationDesc", "Question", "Data_Value", "StratificationCategory1", "Stratification1")
QUESTION_QUERIES = ("states_mean", "best5", "worst5", "global_mean", "diff_from_mean", "mean_by_category")
STATE_QUERIES = ("state_mean", "state_diff_from_mean", "state_mean_by_category")
JOB_TIMEOUT_S = 30.0
HEADERS = {"Content-Type": "application/json"}

Query = tuple[str, dict[str, str]]


def valid_queries(csv_path: str | Path) -> list[Query]:
    """Every (query name, body) the data set answers: questions and (question, state) pairs with a value."""
    path = Path(csv_path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}")
        pairs = {(row["Question"], row["LocationDesc"]) for row in reader if row["Data_Value"].strip()}
    questions = sorted({question for question, _ in pairs})
    return [(name, {"question": question}) for name in QUESTION_QUERIES for question in questions] + [
        (name, {"question": question, "state": state}) for name in STATE_QUERIES for question, state in sorted(pairs)
    ]


@dataclass
class Tally:
    """What the clients measured inside the window."""

    latencies_s: list[float] = field(default_factory=list)
    polls: int = 0
    errors: int = 0


class JobFailed(Exception):
    """A non-200 reply or an "error" status: the job counts as an error."""


# What ends a job as an error: the above, a broken connection, the 30 s limit, or a reply that is not
# the JSON object the contract promises (ValueError from orjson, KeyError, TypeError).
JOB_ERRORS = (JobFailed, aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError)


async def run_job(session: aiohttp.ClientSession, base: str, query_url: URL, body: bytes, poll_interval: float) -> int:
    """POST one query and poll until done; return the number of polls."""
    async with session.post(query_url, data=body, headers=HEADERS) as response:
        payload = await response.read()
        if response.status != 200:
            raise JobFailed(f"POST {query_url.path}: {response.status}")
    results_url = URL(f"{base}/api/get_results/{orjson.loads(payload)['job_id']}", encoded=True)
    polls = 0
    while True:
        polls += 1
        async with session.get(results_url) as response:
            payload = await response.read()
            if response.status != 200:
                raise JobFailed(f"get_results: {response.status}")
        reply = orjson.loads(payload)
        status = reply["status"]
        if status == "done":
            return polls
        if status != "running":
            raise JobFailed(f"job ended with status {status!r}: {reply.get('reason')}")
        if poll_interval:
            await asyncio.sleep(poll_interval)


def group_by_name(base: str, queries: list[Query]) -> list[list[tuple[URL, bytes]]]:
    """Queries grouped per kind with URLs and bodies built once, so a kind is picked before a body."""
    groups: dict[str, list[tuple[URL, bytes]]] = {}
    for name, body in queries:
        groups.setdefault(name, []).append((URL(f"{base}/api/{name}"), orjson.dumps(body)))
    return list(groups.values())


def nearest_rank(ordered: list[float], percent: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[max(math.ceil(percent / 100 * len(ordered)), 1) - 1]


def summarise(tally: Tally, clients: int, duration: float) -> dict[str, float | int | None]:
    """The report object; latency figures are None when no job succeeded."""
    ordered = sorted(tally.latencies_s)
    jobs = len(ordered)

    def ms(percent: float) -> float | None:
        return round(nearest_rank(ordered, percent) * 1000, 3) if ordered else None

    return {
        "clients": clients,
        "duration_s": duration,
        "jobs": jobs,
        "errors": tally.errors,
        "jobs_per_s": round(jobs / duration, 3),
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "max_ms": ms(100),
        "polls_per_job": round(tally.polls / jobs, 3) if jobs else None,
    }


async def run_load(
    url: str, queries: list[Query], clients: int, duration: float, warmup: float, poll_interval: float, seed: int
) -> dict[str, float | int | None]:
    """Drive the server with `clients` closed-loop clients and return the report object.

    jobs counts the jobs that finished "done"; errors those that failed (bad reply, "error" status,
    or not done within 30 s). Both only for jobs started after the warmup.
    """
    if not queries:
        raise ValueError("no valid queries to send")
    base = url.rstrip("/")
    kinds = group_by_name(base, queries)
    tally = Tally()
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup
    stop_at = measure_from + duration

    async def client(session: aiohttp.ClientSession, rng: random.Random) -> None:
        while (started := loop.time()) < stop_at:
            query_url, body = rng.choice(rng.choice(kinds))
            counted = started >= measure_from
            try:
                async with asyncio.timeout(JOB_TIMEOUT_S):
                    polls = await run_job(session, base, query_url, body, poll_interval)
            except JOB_ERRORS:
                if counted:
                    tally.errors += 1
                continue
            if counted:
                tally.latencies_s.append(loop.time() - started)
                tally.polls += polls

    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar()
    )
    async with session:
        await asyncio.gather(*(client(session, random.Random(seed * 1_000_003 + n)) for n in range(clients)))
    return summarise(tally, clients, duration)


def format_report(report: dict[str, float | int | None]) -> str:
    """A few lines for a person."""

    def ms(key: str) -> str:
        return "n/a" if report[key] is None else f"{report[key]:.1f} ms"

    return (
        f"{report['clients']} clients, {report['duration_s']} s measured: "
        f"{report['jobs']} jobs, {report['errors']} errors, {report['jobs_per_s']:.1f} jobs/s\n"
        f"latency p50 {ms('p50_ms')}, p90 {ms('p90_ms')}, p99 {ms('p99_ms')}, max {ms('max_ms')}; "
        f"{report['polls_per_job'] or 0:.2f} polls/job"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="server base URL")
    parser.add_argument("--data", type=Path, required=True, help="the CSV the server serves")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--poll-interval", type=float, default=0.0, help="seconds between polls")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds run but not counted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report object here")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0 or args.poll_interval < 0:
        parser.error("need clients >= 1, duration > 0, warmup >= 0, poll-interval >= 0")
    report = asyncio.run(
        run_load(
            args.url, valid_queries(args.data), args.clients, args.duration, args.warmup, args.poll_interval, args.seed
        )
    )
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
