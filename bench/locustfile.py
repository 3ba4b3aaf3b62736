"""Locust users for Le Stats Sportif: each task is one whole job, reported as one "JOB" entry.

A user picks one of the 9 query kinds at random, then a valid question (and state) for it, from
the CSV named by $LESTATS_DATA (default data/sample.csv: it must be the file the server serves),
POSTs it, and polls get_results until "done", as bench/load.py's clients do. The POST and all the
polls are reported as ONE custom event: request_type "JOB", name = the query kind, response_time =
POST sent -> "done" received in ms. The individual HTTP requests are not reported at all: the
user's HTTP session fires its per-request events into a private hook that nothing listens to, so
locust's table holds one row per query kind (and the aggregate) and its percentiles are job
latencies. A job fails on a non-200 reply, an "error" status, or not being done within 30 s.

    LESTATS_DATA=data/sample.csv .venv/bin/locust -f bench/locustfile.py --headless \\
        -u 16 -r 16 -t 10s --host http://127.0.0.1:5000
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import orjson
from load import HEADERS, JOB_TIMEOUT_S, JobFailed, Query, valid_queries
from locust import FastHttpUser, constant, task
from locust.event import EventHook

DATA = Path(os.environ.get("LESTATS_DATA", Path(__file__).resolve().parents[1] / "data" / "sample.csv"))


def by_kind(queries: list[Query]) -> dict[str, list[tuple[str, bytes]]]:
    """(path, body) pairs per query kind, built once, so a kind is drawn first, then a body."""
    kinds: dict[str, list[tuple[str, bytes]]] = {}
    for name, body in queries:
        kinds.setdefault(name, []).append((f"/api/{name}", orjson.dumps(body)))
    return kinds


KINDS = list(by_kind(valid_queries(DATA)).items())


class JobUser(FastHttpUser):
    """A closed-loop client: one job at a time, no think time (as bench/load.py)."""

    wait_time = constant(0)

    def __init__(self, environment) -> None:  # type: ignore[no-untyped-def]
        super().__init__(environment)
        self.client.request_event = EventHook()  # per-request events go nowhere; only JOB events count

    def run_job(self, path: str, body: bytes) -> int:
        """POST and poll until done; returns the bytes of the final reply."""
        response = self.client.post(path, data=body, headers=HEADERS)
        if response.status_code != 200:
            raise JobFailed(f"POST {path}: {response.status_code}")
        results = f"/api/get_results/{orjson.loads(response.content)['job_id']}"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            response = self.client.get(results)
            if response.status_code != 200:
                raise JobFailed(f"get_results: {response.status_code}")
            status = orjson.loads(response.content)["status"]
            if status == "done":
                return len(response.content)
            if status != "running":
                raise JobFailed(f"job ended with status {status!r}")
        raise JobFailed(f"not done within {JOB_TIMEOUT_S:.0f} s")

    @task
    def job(self) -> None:
        kind, requests = random.choice(KINDS)
        path, body = random.choice(requests)
        started = time.perf_counter()
        length, failure = 0, None
        try:
            length = self.run_job(path, body)
        except Exception as error:  # any failure of the job is reported as the JOB event's exception
            failure = error
        self.environment.events.request.fire(
            request_type="JOB",
            name=kind,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=failure,
            context={},
        )
