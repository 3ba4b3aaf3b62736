"""The ORIGINAL Le Stats Sportif design, re-created as a benchmark baseline.

Our aiohttp service replaces a Flask app that ran every query on a pool of threads inside one
process: the data set sat in memory as a list of dicts read with the csv module, each job scanned all
of it in plain Python, wrote its result as a JSON file into results/, and get_results read the file
back. This module rebuilds that design on purpose, slow parts included, so that benchmarks compare
against what really ran. It also serves as a plain-Python cross-check of our numbers: the routes,
reply shapes, validation and orderings follow /work/shared/API.md.

Differences from the original, all so that it measures the design and honours the contract:
- werkzeug's per-request log line is silenced (it would measure the terminal, not the design);
- only the columns the queries read are kept in each row dict (memory only; a scan costs the same);
- bad input is refused with 400/413/503 JSON replies, as the contract demands;
- job numbers resume after the highest result file in the results directory, so no id is reused;
- SIGTERM exits with status 0 (Flask's server would die of the signal), so benchmarks can check
  that every server they stop, this one included, stops cleanly.

Run: python bench/original.py --data FILE.csv --port 5001 [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

REQUIRED_COLUMNS = ("LocationDesc", "Question", "Data_Value", "StratificationCategory1", "Stratification1")
MAX_BODY_BYTES = 64 * 1024

LOWER_IS_BETTER = frozenset(
    {
        "Percent of adults aged 18 years and older who have an overweight classification",
        "Percent of adults aged 18 years and older who have obesity",
        "Percent of adults who engage in no leisure-time physical activity",
        "Percent of adults who report consuming fruit less than one time daily",
        "Percent of adults who report consuming vegetables less than one time daily",
    }
)

QUERY_NAMES = frozenset(
    {
        "states_mean",
        "state_mean",
        "best5",
        "worst5",
        "global_mean",
        "diff_from_mean",
        "state_diff_from_mean",
        "mean_by_category",
        "state_mean_by_category",
    }
)
STATE_QUERIES = frozenset({"state_mean", "state_diff_from_mean", "state_mean_by_category"})

Row = dict[str, Any]
Body = dict[str, Any]
JOB_ID = re.compile(r"(?:job_id_)?([1-9][0-9]*)")
RESULT_FILE = re.compile(r"job_id_([1-9][0-9]*)\.json")


class BadRequest(Exception):
    """A query the contract refuses at once with 400, before any job exists."""


def load_rows(path: Path) -> list[Row]:
    """Read the CSV into a list of dicts, Data_Value as a float or None, refusing what the contract refuses."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in REQUIRED_COLUMNS:
            if column not in header:
                raise SystemExit(f"{path}: required column {column!r} is missing from the header")
        rows = []
        for row in reader:
            text = row["Data_Value"].strip()
            try:
                value = float(text) if text else None
            except ValueError:
                raise SystemExit(
                    f"{path}: column 'Data_Value', line {reader.line_num}: {text!r} is not a number"
                ) from None
            rows.append({column: row[column] for column in REQUIRED_COLUMNS} | {"Data_Value": value})
    return rows


def mean(values: list[float]) -> float:
    """The arithmetic mean with a plain Python sum, as the original solutions computed it."""
    return sum(values) / len(values)


def group_means(pairs: Iterable[tuple[Any, float]]) -> dict[Any, float]:
    """Mean of the values under each key, keys in first-seen order."""
    groups: dict[Any, list[float]] = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(value)
    return {key: mean(values) for key, values in groups.items()}


class Queries:
    """The nine queries, each a full scan of the rows in plain Python."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        valued = [row for row in rows if row["Data_Value"] is not None]
        self.questions = {row["Question"] for row in valued}
        self.states = {row["LocationDesc"] for row in rows}
        self.pairs = {(row["Question"], row["LocationDesc"]) for row in valued}

    def _of(self, question: str, state: str | None = None) -> list[Row]:
        """The valued rows of a question (and state): the scan every job starts with."""
        return [
            row
            for row in self.rows
            if row["Question"] == question
            and row["Data_Value"] is not None
            and (state is None or row["LocationDesc"] == state)
        ]

    def _state_means(self, question: str) -> dict[str, float]:
        return group_means((row["LocationDesc"], row["Data_Value"]) for row in self._of(question))

    def _global_mean(self, question: str) -> float:
        return mean([row["Data_Value"] for row in self._of(question)])

    def _ranked(self, question: str, best_first: bool) -> dict[str, float]:
        """Five states by mean; lower-is-better questions rank ascending for the best."""
        ascending = (question in LOWER_IS_BETTER) == best_first
        ranked = sorted(self._state_means(question).items(), key=lambda item: item[1], reverse=not ascending)
        return dict(ranked[:5])

    def states_mean(self, body: Body) -> dict[str, float]:
        return dict(sorted(self._state_means(body["question"]).items(), key=lambda item: item[1]))

    def state_mean(self, body: Body) -> dict[str, float]:
        rows = self._of(body["question"], body["state"])
        return {body["state"]: mean([row["Data_Value"] for row in rows])}

    def best5(self, body: Body) -> dict[str, float]:
        return self._ranked(body["question"], best_first=True)

    def worst5(self, body: Body) -> dict[str, float]:
        return self._ranked(body["question"], best_first=False)

    def global_mean(self, body: Body) -> dict[str, float]:
        return {"global_mean": self._global_mean(body["question"])}

    def diff_from_mean(self, body: Body) -> dict[str, float]:
        overall = self._global_mean(body["question"])
        diffs = {state: overall - value for state, value in self._state_means(body["question"]).items()}
        return dict(sorted(diffs.items(), key=lambda item: item[1], reverse=True))

    def state_diff_from_mean(self, body: Body) -> dict[str, float]:
        overall = self._global_mean(body["question"])
        return {body["state"]: overall - self.state_mean(body)[body["state"]]}

    def mean_by_category(self, body: Body) -> dict[str, float]:
        means = group_means(
            ((row["LocationDesc"], row["StratificationCategory1"], row["Stratification1"]), row["Data_Value"])
            for row in self._of(body["question"])
            if row["StratificationCategory1"] and row["Stratification1"]
        )
        return {str(key): value for key, value in sorted(means.items())}

    def state_mean_by_category(self, body: Body) -> dict[str, dict[str, float]]:
        means = group_means(
            ((row["StratificationCategory1"], row["Stratification1"]), row["Data_Value"])
            for row in self._of(body["question"], body["state"])
            if row["StratificationCategory1"] and row["Stratification1"]
        )
        return {body["state"]: {str(key): value for key, value in sorted(means.items())}}

    def handler(self, name: str) -> Callable[[Body], Any] | None:
        """The query method for a route name, or None for a name that is not a query."""
        return getattr(self, name, None) if name in QUERY_NAMES else None

    def validate(self, name: str, body: Any) -> None:
        """Refuse a body the contract answers with 400 rather than a failing job."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        needed = ("question", "state") if name in STATE_QUERIES else ("question",)
        for field in needed:
            if not isinstance(body.get(field), str):
                raise BadRequest(f"'{field}' is missing or is not text")
        if body["question"] not in self.questions:
            raise BadRequest(f"unknown question {body['question']!r}")
        if "state" in needed:
            if body["state"] not in self.states:
                raise BadRequest(f"unknown state {body['state']!r}")
            if (body["question"], body["state"]) not in self.pairs:
                raise BadRequest(f"no value for question {body['question']!r} in state {body['state']!r}")


class ThreadPool:
    """N worker threads fed by one queue.Queue, as the original service ran its jobs."""

    def __init__(self, num_threads: int) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(num_threads)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                task()
            finally:
                with self._lock:
                    self._pending -= 1

    def submit(self, task: Callable[[], None]) -> bool:
        """Queue a task; False once shut down, so no job is accepted after graceful_shutdown."""
        with self._lock:
            if self._closed:
                return False
            self._pending += 1
        self._queue.put(task)
        return True

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def pending(self) -> int:
        """Tasks queued or running."""
        with self._lock:
            return self._pending

    def shutdown(self) -> None:
        """Stop accepting tasks; each worker exits after the queued ones (one sentinel per thread)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)


class Jobs:
    """Job ids and states; each finished job's reply lives in results_dir/job_id_<n>.json."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._states: dict[int, str] = {}
        for path in results_dir.iterdir():
            if match := RESULT_FILE.fullmatch(path.name):
                self._states[int(match[1])] = json.loads(path.read_text())["status"]
        self._states = dict(sorted(self._states.items()))
        self._last = max(self._states, default=0)

    def new(self) -> int:
        """Issue the next job number, marked running."""
        with self._lock:
            self._last += 1
            self._states[self._last] = "running"
            return self._last

    def path(self, number: int) -> Path:
        return self.results_dir / f"job_id_{number}.json"

    def finish(self, number: int, reply: dict[str, Any]) -> None:
        """Write the reply file first, then flip the state, so get_results never finds it half written."""
        self.path(number).write_text(json.dumps(reply))
        with self._lock:
            self._states[number] = reply["status"]

    def state(self, number: int) -> str | None:
        with self._lock:
            return self._states.get(number)

    def listing(self) -> list[dict[str, str]]:
        with self._lock:
            return [{f"job_id_{number}": state} for number, state in self._states.items()]


def json_reply(payload: Any, status: int = 200) -> Response:
    """A JSON reply that keeps dict order (Flask's jsonify would sort the keys)."""
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def error_reply(reason: str, status: int) -> Response:
    return json_reply({"status": "error", "reason": reason}, status)


def create_app(data: Path, results_dir: Path, num_threads: int) -> Flask:
    """The Flask app: routes of API.md over a ThreadPool and a results directory."""
    queries = Queries(load_rows(data))
    pool = ThreadPool(num_threads)
    jobs = Jobs(results_dir)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return error_reply(error.description or error.name, error.code or 500)

    @app.post("/api/<name>")
    def submit(name: str) -> Response:
        handler = queries.handler(name)
        if handler is None:
            return error_reply(f"unknown query {name!r}", 404)
        if pool.closed:
            return error_reply("shutting down", 503)
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return error_reply("the body is not JSON", 400)
        try:
            queries.validate(name, body)
        except BadRequest as error:
            return error_reply(str(error), 400)
        number = jobs.new()

        def run() -> None:
            try:
                reply = {"status": "done", "data": handler(body)}
            except Exception as error:  # a failing job is reported through get_results
                reply = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
            jobs.finish(number, reply)

        if not pool.submit(run):  # shut down between the check above and now
            jobs.finish(number, {"status": "error", "reason": "shutting down"})
            return error_reply("shutting down", 503)
        return json_reply({"job_id": f"job_id_{number}"})

    @app.get("/api/get_results/<job_id>")
    def get_results(job_id: str) -> Response:
        match = JOB_ID.fullmatch(job_id)
        state = jobs.state(int(match[1])) if match else None
        if state is None:
            return error_reply("Invalid job_id", 404)
        if state == "running":
            return json_reply({"status": "running"})
        return Response(jobs.path(int(match[1])).read_bytes(), mimetype="application/json")

    @app.get("/api/jobs")
    def list_jobs() -> Response:
        return json_reply({"status": "done", "data": jobs.listing()})

    @app.get("/api/num_jobs")
    def num_jobs() -> Response:
        return json_reply({"num_jobs": pool.pending()})

    @app.get("/api/graceful_shutdown")
    def graceful_shutdown() -> Response:
        pool.shutdown()
        return json_reply({"status": "running" if pool.pending() else "done"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CDC CSV file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path("bench/out/original-results"),
        help="where job results are written (kept apart from the real server's ./results)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("TP_NUM_OF_THREADS") or os.cpu_count() or 1),
        help="worker threads (default: $TP_NUM_OF_THREADS, else the CPU count)",
    )
    args = parser.parse_args()
    app = create_app(args.data, args.results_dir, args.threads)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"original baseline: {args.threads} threads on http://{args.host}:{args.port}, data {args.data}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
