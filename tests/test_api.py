"""Every route and every error reply of API.md, in process, through pytest-aiohttp's `aiohttp_client`.

Each test gets its own app (`create_app(Config(...))`) over the bundled sample with 2 real pool
workers and a fresh state dir; the fixture's cleanup stops it (drain, close, unlink) after the test.
Results are held to the plain-Python reference (tests/reference.py).
"""

import ast
import asyncio
import contextlib
import csv
import gc
import json
import math
import os
import re
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web_app
from aiohttp.test_utils import TestClient, TestServer
from conftest import PROJECT_ROOT, SHARED_DATA_DIR
from reference import CSV_COLUMNS, QUERY_NAMES, QUESTIONS_BEST_IS_MAX, QUESTIONS_BEST_IS_MIN, load_rows, reference

from server.app import create_app
from server.config import Config

SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
ASSIGNMENT_SAMPLE = SHARED_DATA_DIR / "assignment-sample-rows.csv"

OBESITY = "Percent of adults aged 18 years and older who have obesity"  # lower is better
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"  # higher
assert OBESITY in QUESTIONS_BEST_IS_MIN and MUSCLE in QUESTIONS_BEST_IS_MAX

QUERIES = QUERY_NAMES
STATE_QUERIES = ("state_mean", "state_diff_from_mean", "state_mean_by_category")

RESULT_TIMEOUT_S = 5.0

SHUTTING_DOWN = {"status": "error", "reason": "shutting down"}
INVALID_JOB_ID = {"status": "error", "reason": "Invalid job_id"}


@pytest.fixture(scope="module")
def sample_rows():
    return load_rows(SAMPLE)


def body_for(query, question=OBESITY, state="Ohio"):
    return {"question": question, "state": state} if query in STATE_QUERIES else {"question": question}


def release_stopped_apps():
    """Let the stopped apps of this process go: aiohttp's middleware cache (an lru_cache of up to
    1024 entries keyed by the apps) keeps each one, with its stopped pool and the pool's 6
    semaphores in /dev/shm, until the process exits; apps are also freed only by the collector."""
    cache = getattr(web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()
    gc.collect()


@pytest.fixture(autouse=True)
def release_apps():
    """Set up before, so torn down after, the fixtures that stop the test's apps."""
    yield
    release_stopped_apps()


def own_semaphores():
    return {path.name for path in Path("/dev/shm").glob(f"sem.lestats_{os.getpid()}_*")}


@pytest.fixture
def make_client(aiohttp_client, tmp_path):
    """make_client(data=..., **config) -> a client of a fresh app with 2 workers and its own state dir."""

    async def make(data=SAMPLE, **config):
        config.setdefault("state_dir", tmp_path / "state")
        return await aiohttp_client(create_app(Config(data=data, workers=2, **config)))

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


# ---------------------------------------------------------------------------------------------
# Helpers


async def submit(client, query, body):
    """POST a query that must be accepted; returns its job id."""
    response = await client.post(f"/api/{query}", json=body)
    text = await response.text()
    assert response.status == 200, f"POST /api/{query} {body}: {response.status} {text}"
    reply = json.loads(text)
    assert set(reply) == {"job_id"} and re.fullmatch(r"job_id_[1-9][0-9]*", reply["job_id"]), reply
    return reply["job_id"]


async def wait_result(client, job_id, timeout=RESULT_TIMEOUT_S):
    """Poll get_results until the job is no longer running; returns the whole reply."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await client.get(f"/api/get_results/{job_id}")
        assert response.status == 200, f"get_results/{job_id}: {response.status} {await response.text()}"
        reply = await response.json()
        if reply != {"status": "running"}:
            return reply
        if loop.time() > deadline:
            pytest.fail(f"{job_id} still running after {timeout} s")
        await asyncio.sleep(0.01)


async def run_query(client, query, body):
    """Submit, wait, and return `data` of a job that must end done."""
    job_id = await submit(client, query, body)
    reply = await wait_result(client, job_id)
    assert reply.get("status") == "done" and set(reply) == {"status", "data"}, f"{query} {body}: {reply}"
    return reply["data"]


async def expect_error(response, status):
    """An error reply: the status, and API.md's JSON shape; returns the reason."""
    text = await response.text()
    assert response.status == status, (
        f"{response.method} {response.url.path}: want {status}, got {response.status} {text}"
    )
    assert response.content_type == "application/json", f"{response.status} reply is {response.content_type}: {text!r}"
    reply = json.loads(text)
    assert isinstance(reply, dict) and set(reply) == {"status", "reason"}, reply
    assert reply["status"] == "error", reply
    assert isinstance(reply["reason"], str) and reply["reason"].strip(), reply
    return reply["reason"]


async def still_serves(client):
    """After an error, a valid query is still accepted and answered."""
    data = await run_query(client, "global_mean", {"question": OBESITY})
    assert isinstance(data["global_mean"], float)


@contextlib.asynccontextmanager
async def paused_workers(client):
    """SIGSTOP the pool's workers (named by /api/health) for the block, SIGCONT them after it."""
    workers = (await (await client.get("/api/health")).json())["workers"]
    assert workers
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        for pid in workers:  # wait until each one is really stopped
            while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                await asyncio.sleep(0.001)
        yield workers
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)


def all_floats(data):
    """Every number in a result is a finite JSON float (never an int, NaN, Infinity or null)."""
    for value in data.values():
        if isinstance(value, dict):
            all_floats(value)
        else:
            assert type(value) is float and math.isfinite(value), f"{value!r} in {data}"


def assert_matches(got, want):
    """Same keys in the same order, values equal to the last bit (recursing into nested dicts):
    the reference's means are exact, and so are the server's."""
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, dict):
            assert_matches(got[key], value)
        else:
            assert got[key] == value, (key, got[key], value)


def write_csv(
    path,
    rows,
    header=CSV_COLUMNS,
):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------
# The nine queries


@pytest.mark.parametrize("query", QUERIES)
async def test_each_query_gives_the_reference_result(client, sample_rows, query):
    data = await run_query(client, query, body_for(query))

    all_floats(data)
    want = reference(sample_rows, query, OBESITY, "Ohio" if query in STATE_QUERIES else None)
    assert_matches(data, want)


async def test_states_mean_ascends_and_diff_from_mean_descends(client):
    means = await run_query(client, "states_mean", {"question": MUSCLE})
    diffs = await run_query(client, "diff_from_mean", {"question": MUSCLE})
    global_mean = (await run_query(client, "global_mean", {"question": MUSCLE}))["global_mean"]

    assert len(means) == 55, "every location of the sample has a value for every question"
    assert list(means.values()) == sorted(means.values())
    assert list(diffs.values()) == sorted(diffs.values(), reverse=True)
    assert set(diffs) == set(means)
    for state, mean in means.items():
        assert diffs[state] == global_mean - mean, state
    assert "National" in means and "Guam" in means, "every LocationDesc is a 'state'"


@pytest.mark.parametrize(
    "question, lower_is_better", [(OBESITY, True), (MUSCLE, False)], ids=["lower-better", "higher-better"]
)
async def test_best5_and_worst5_follow_the_question_direction(client, question, lower_is_better):
    means = await run_query(client, "states_mean", {"question": question})  # ascending
    best = await run_query(client, "best5", {"question": question})
    worst = await run_query(client, "worst5", {"question": question})

    ascending = list(means.items())
    best_first = ascending if lower_is_better else ascending[::-1]
    assert len(best) == 5 and len(worst) == 5
    assert list(best.items()) == best_first[:5]
    assert list(worst.items()) == best_first[::-1][:5]
    values = list(best.values())
    assert values == sorted(values, reverse=not lower_is_better), "best5 is best first"
    values = list(worst.values())
    assert values == sorted(values, reverse=lower_is_better), "worst5 is worst first"


async def test_by_category_keys_are_python_tuple_strings_in_order(client):
    by_category = await run_query(client, "mean_by_category", {"question": OBESITY})
    ohio = await run_query(client, "state_mean_by_category", {"question": OBESITY, "state": "Ohio"})

    assert "('Ohio', 'Age (years)', '18 - 24')" in by_category
    keys = [ast.literal_eval(key) for key in by_category]
    assert all(isinstance(k, tuple) and len(k) == 3 and all(isinstance(p, str) and p for p in k) for k in keys)
    assert [str(k) for k in keys] == list(by_category), "keys are exactly str() of the tuple"
    assert keys == sorted(keys), "(state, category, segment) order"

    assert list(ohio) == ["Ohio"]
    inner = ohio["Ohio"]
    assert "('Age (years)', '18 - 24')" in inner
    inner_keys = [ast.literal_eval(key) for key in inner]
    assert all(isinstance(k, tuple) and len(k) == 2 for k in inner_keys)
    assert [str(k) for k in inner_keys] == list(inner) and inner_keys == sorted(inner_keys)
    # The same groups as Ohio's part of mean_by_category.
    assert inner == {str(k[1:]): v for k, v in zip(keys, by_category.values(), strict=True) if k[0] == "Ohio"}


async def test_unknown_extra_fields_are_ignored(client):
    plain = await run_query(client, "state_mean", {"question": OBESITY, "state": "Ohio"})
    extra = await run_query(client, "state_mean", {"question": OBESITY, "state": "Ohio", "colour": "blue", "n": [1]})
    assert extra == plain


# ---------------------------------------------------------------------------------------------
# Jobs


async def test_job_ids_count_up_from_1_and_the_bare_number_works(client):
    ids = [await submit(client, query, body_for(query)) for query in QUERIES]
    assert ids == [f"job_id_{n}" for n in range(1, 10)]

    for n, job_id in enumerate(ids, start=1):
        by_name = await wait_result(client, job_id)
        bare = await client.get(f"/api/get_results/{n}")
        assert bare.status == 200
        assert await bare.json() == by_name


async def test_unknown_job_ids_are_404(client):
    await wait_result(client, await submit(client, "global_mean", {"question": OBESITY}))  # job_id_1 exists
    for job_id in [
        "job_id_2",
        "2",
        "job_id_999999",
        "abc",
        "job_id_",
        "job_id_abc",
        "0",
        "job_id_0",
        "-1",
        "job_id_-1",
        "1.0",
        "job_id_1x",
        "JOB_ID_1",
        "%D9%A1",
    ]:  # the last is Arabic-Indic '1'
        response = await client.get(f"/api/get_results/{job_id}")
        assert await response.json(content_type=None) == INVALID_JOB_ID, job_id
        await expect_error(response, 404)
    assert (await client.get("/api/get_results/job_id_1")).status == 200
    await still_serves(client)


async def test_jobs_lists_every_job_in_id_order(client):
    ids = [await submit(client, "states_mean", {"question": OBESITY}) for _ in range(12)]
    for job_id in ids:
        await wait_result(client, job_id)

    response = await client.get("/api/jobs")
    assert response.status == 200
    reply = await response.json()
    assert reply["status"] == "done"
    assert reply["data"] == [{f"job_id_{n}": "done"} for n in range(1, 13)], "numeric order: job_id_10 after job_id_9"


async def test_num_jobs_jobs_and_get_results_while_jobs_run(client):
    assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": 0}

    async with paused_workers(client):  # accepted jobs stay unfinished until the workers go on
        ids = [await submit(client, "mean_by_category", {"question": OBESITY}) for _ in range(5)]
        assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": 5}
        for job_id in ids:
            assert await (await client.get(f"/api/get_results/{job_id}")).json() == {"status": "running"}
        jobs = await (await client.get("/api/jobs")).json()
        assert jobs == {"status": "done", "data": [{job_id: "running"} for job_id in ids]}

    for job_id in ids:
        assert (await wait_result(client, job_id))["status"] == "done"
    assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": 0}
    jobs = await (await client.get("/api/jobs")).json()
    assert jobs == {"status": "done", "data": [{job_id: "done"} for job_id in ids]}


async def test_health_names_two_live_workers(client):
    response = await client.get("/api/health")
    assert response.status == 200
    health = await response.json()
    assert health["status"] == "ok"
    workers = health["workers"]
    assert isinstance(workers, list) and len(workers) == 2 and len(set(workers)) == 2, workers
    for pid in workers:
        assert type(pid) is int and pid != os.getpid()
        os.kill(pid, 0)  # raises ProcessLookupError if it is not alive
    # They answer: a job run now leaves the same two workers.
    await still_serves(client)
    assert (await (await client.get("/api/health")).json())["workers"] == workers


async def test_the_index_page_answers(client):
    response = await client.get("/")
    assert response.status == 200
    assert await response.read()


# ---------------------------------------------------------------------------------------------
# 400: bad queries, refused at once


BAD_BODIES = {
    "not-json": b"question=obesity",
    "empty": b"",
    "truncated-json": b'{"question": ',
    "not-utf8": b'{"question": "\xff"}',
    "json-list": b"[]",
    "json-string": b'"Percent of adults aged 18 years and older who have obesity"',
    "json-number": b"42",
    "json-null": b"null",
    "no-question": b"{}",
    "question-null": json.dumps({"question": None}).encode(),
    "question-number": json.dumps({"question": 36}).encode(),
    "question-list": json.dumps({"question": [OBESITY]}).encode(),
    "unknown-question": json.dumps({"question": "Percent of adults who enjoy writing tests"}).encode(),
    "question-other-case": json.dumps({"question": OBESITY.upper()}).encode(),
    "question-trailing-space": json.dumps({"question": OBESITY + " "}).encode(),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_a_bad_body_is_400(client, case):
    for query in ("states_mean", "best5", "state_mean"):
        await expect_error(await client.post(f"/api/{query}", data=BAD_BODIES[case]), 400)
        await still_serves(client)
    jobs = await (await client.get("/api/jobs")).json()
    assert len(jobs["data"]) == 3, "a refused query is not a job"


BAD_STATES = {
    "missing": {},
    "null": {"state": None},
    "number": {"state": 39},
    "list": {"state": ["Ohio"]},
    "unknown": {"state": "Atlantis"},
    "other-case": {"state": "ohio"},
    "abbreviation": {"state": "OH"},
}


@pytest.mark.parametrize("case", list(BAD_STATES))
async def test_a_bad_state_is_400_for_each_state_query(client, case):
    for query in STATE_QUERIES:
        body = {"question": OBESITY, **BAD_STATES[case]}
        await expect_error(await client.post(f"/api/{query}", json=body), 400)
        await still_serves(client)


async def test_a_state_is_not_needed_by_the_other_queries(client):
    for query in set(QUERIES) - set(STATE_QUERIES):
        await run_query(client, query, {"question": OBESITY, "state": "Atlantis"})


@pytest.fixture
def gappy_csv(tmp_path):
    """Iowa has a row but no value for MUSCLE, Texas no MUSCLE row at all; Utah's only MUSCLE value
    has no stratification."""
    return write_csv(
        tmp_path / "gappy.csv",
        [
            (2015, 2015, "Ohio", OBESITY, "30.0", "Total", "Total"),
            (2015, 2015, "Ohio", OBESITY, "20.0", "Age (years)", "18 - 24"),
            (2015, 2015, "Utah", OBESITY, "25.0", "Total", "Total"),
            (2015, 2015, "Iowa", OBESITY, "35.0", "Total", "Total"),
            (2015, 2015, "Texas", OBESITY, "33.0", "Total", "Total"),
            (2015, 2015, "Ohio", MUSCLE, "40", "Total", "Total"),  # whole numbers: still JSON floats
            (2017, 2017, "Utah", MUSCLE, "45", "", ""),
            (2015, 2015, "Iowa", MUSCLE, "", "Total", "Total"),
        ],
    )


@pytest.mark.parametrize("state", ["Iowa", "Texas"])
async def test_a_state_without_a_value_for_the_question_is_400_naming_the_pair(make_client, gappy_csv, state):
    client = await make_client(data=gappy_csv)
    for query in STATE_QUERIES:
        reason = await expect_error(await client.post(f"/api/{query}", json={"question": MUSCLE, "state": state}), 400)
        assert state in reason and MUSCLE in reason, f"{query}: the reason should name the pair: {reason!r}"
        await still_serves(client)
    # The same state with a question it has a value for is fine.
    obesity = {"Iowa": 35.0, "Texas": 33.0}[state]
    assert await run_query(client, "state_mean", {"question": OBESITY, "state": state}) == {state: obesity}


async def test_a_state_without_a_value_is_just_absent_from_the_all_states_queries(make_client, gappy_csv):
    client = await make_client(data=gappy_csv)

    async def data(query, **body):
        result = await run_query(client, query, {"question": MUSCLE, **body})
        all_floats(result)
        return result

    assert await data("states_mean") == {"Ohio": 40.0, "Utah": 45.0}
    assert await data("global_mean") == {"global_mean": 42.5}
    assert await data("diff_from_mean") == {"Ohio": 2.5, "Utah": -2.5}
    assert await data("best5") == {"Utah": 45.0, "Ohio": 40.0}
    # Utah's value has no stratification: it counts in the means above, not by category.
    assert await data("mean_by_category") == {"('Ohio', 'Total', 'Total')": 40.0}
    assert await data("state_mean_by_category", state="Utah") == {"Utah": {}}
    assert await data("state_mean", state="Utah") == {"Utah": 45.0}


# ---------------------------------------------------------------------------------------------
# 413, unknown routes, wrong methods


def padded_body(size):
    """A valid query body of exactly `size` bytes."""
    short = json.dumps({"question": OBESITY, "pad": ""}).encode()
    body = json.dumps({"question": OBESITY, "pad": "x" * (size - len(short))}).encode()
    assert len(body) == size
    return body


async def in_chunks(body, size=700):
    """The body sent with chunked transfer encoding (no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("size", [1025, 4000, 10_000])
async def test_a_body_over_the_limit_is_413(make_client, size):
    client = await make_client(max_body=1024)
    await expect_error(await client.post("/api/states_mean", data=padded_body(size)), 413)
    await still_serves(client)


@pytest.mark.parametrize("size", [1025, 3000, 100_000])
async def test_a_chunked_body_over_the_limit_is_413(make_client, size):
    client = await make_client(max_body=1024)
    await expect_error(await client.post("/api/states_mean", data=in_chunks(padded_body(size))), 413)
    await still_serves(client)


async def test_a_chunked_body_over_the_default_limit_is_413(make_client):
    client = await make_client()
    await expect_error(await client.post("/api/states_mean", data=in_chunks(padded_body(2**20 + 1000), 64 * 1024)), 413)
    await still_serves(client)


async def test_a_body_of_exactly_the_limit_is_accepted(make_client):
    client = await make_client(max_body=1024)
    response = await client.post("/api/states_mean", data=padded_body(1024))
    assert response.status == 200, await response.text()
    assert (await wait_result(client, (await response.json())["job_id"]))["status"] == "done"


UNKNOWN_ROUTES = [
    ("GET", "/nope"),
    ("GET", "/api/nope"),
    ("POST", "/api/nope"),
    ("POST", "/api/states_means"),
    ("POST", "/api/states_mean/"),
    ("GET", "/api/get_results"),
    ("GET", "/api/get_results/"),
    ("GET", "/api/get_results/1/extra"),
]

WRONG_METHODS = [
    ("GET", "/api/states_mean"),
    ("PUT", "/api/state_mean"),
    ("POST", "/api/jobs"),
    ("POST", "/api/num_jobs"),
    ("POST", "/api/graceful_shutdown"),
    ("DELETE", "/api/get_results/1"),
    ("POST", "/api/health"),
]


async def test_an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405(client):
    for status, cases in ((404, UNKNOWN_ROUTES), (405, WRONG_METHODS)):
        for method, path in cases:
            await expect_error(await client.request(method, path, json={"question": OBESITY}), status)
            await still_serves(client)


# ---------------------------------------------------------------------------------------------
# graceful_shutdown


async def test_graceful_shutdown_finishes_accepted_jobs_and_refuses_new_ones(client):
    async with paused_workers(client):  # so that jobs are certainly still running at the call
        ids = [await submit(client, query, body_for(query)) for query in QUERIES * 5]

        response = await client.get("/api/graceful_shutdown")
        assert response.status == 200 and await response.json() == {"status": "running"}

        for query in QUERIES:
            response = await client.post(f"/api/{query}", json=body_for(query))
            assert response.status == 503 and await response.json() == SHUTTING_DOWN, query
        # Even a bad body: the server is not taking queries at all.
        response = await client.post("/api/states_mean", data=b"not json")
        assert response.status == 503 and await response.json() == SHUTTING_DOWN

        # The other routes keep answering.
        assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": len(ids)}
        jobs = await (await client.get("/api/jobs")).json()
        assert jobs["data"] == [{job_id: "running"} for job_id in ids]
        assert await (await client.get(f"/api/get_results/{ids[0]}")).json() == {"status": "running"}
        assert await (await client.get("/api/graceful_shutdown")).json() == {"status": "running"}

    for job_id in ids:
        assert (await wait_result(client, job_id))["status"] == "done", job_id
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESULT_TIMEOUT_S
    while (reply := await (await client.get("/api/graceful_shutdown")).json()) != {"status": "done"}:
        assert reply == {"status": "running"} and loop.time() < deadline, reply
        await asyncio.sleep(0.01)
    assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": 0}
    jobs = await (await client.get("/api/jobs")).json()
    assert jobs["data"] == [{job_id: "done"} for job_id in ids]
    response = await client.post("/api/global_mean", json={"question": OBESITY})
    assert response.status == 503 and await response.json() == SHUTTING_DOWN


async def test_graceful_shutdown_with_no_jobs_is_done_at_once(client):
    assert await (await client.get("/api/graceful_shutdown")).json() == {"status": "done"}
    await expect_error(await client.post("/api/global_mean", json={"question": OBESITY}), 503)
    await expect_error(await client.get("/api/get_results/job_id_1"), 404)


# ---------------------------------------------------------------------------------------------
# Extensions: years, dataset


def rows_in_years(first, last):
    """The sample's rows (as reference.load_rows gives them) whose years lie in [first, last]."""
    with open(SAMPLE, newline="", encoding="utf-8-sig") as stream:
        years = [(int(r["YearStart"]), int(r["YearEnd"])) for r in csv.DictReader(stream)]
    rows = load_rows(SAMPLE)
    return [row for row, (start, end) in zip(rows, years, strict=True) if first <= start and end <= last]


async def test_years_filter_the_rows(client, sample_rows):
    everything = await run_query(client, "states_mean", {"question": OBESITY})
    some_years = await run_query(client, "states_mean", {"question": OBESITY, "years": [2015, 2017]})

    assert some_years != everything
    assert_matches(some_years, reference(rows_in_years(2015, 2017), "states_mean", OBESITY))
    global_mean = await run_query(client, "global_mean", {"question": OBESITY, "years": [2015, 2017]})
    assert_matches(global_mean, reference(rows_in_years(2015, 2017), "global_mean", OBESITY))
    # No "years" (or null) is no filter at all.
    assert await run_query(client, "states_mean", {"question": OBESITY, "years": None}) == everything


async def test_a_bad_years_value_is_400(client):
    for years in [
        "2015-2017",
        2015,
        [2015],
        [2015, 2016, 2017],
        [2017, 2015],
        [2015, "2017"],
        [True, 2017],
        [2015.5, 2017],
        {"from": 2015, "to": 2017},
        [],
    ]:
        response = await client.post("/api/states_mean", json={"question": OBESITY, "years": years})
        reason = await expect_error(response, 400)
        assert "years" in reason, (years, reason)
        await still_serves(client)


async def test_years_on_a_data_set_without_year_columns_is_400(make_client, tmp_path):
    data = write_csv(
        tmp_path / "no-years.csv",
        [("Ohio", OBESITY, "30.0", "Total", "Total")],
        header=("LocationDesc", "Question", "Data_Value", "StratificationCategory1", "Stratification1"),
    )
    client = await make_client(data=data)
    await expect_error(await client.post("/api/states_mean", json={"question": OBESITY, "years": [2015, 2017]}), 400)
    assert await run_query(client, "states_mean", {"question": OBESITY}) == {"Ohio": 30.0}


async def test_an_unknown_dataset_is_400(client):
    for dataset in ["nope", "", "Default", 1, ["default"]]:
        await expect_error(await client.post("/api/states_mean", json={"question": OBESITY, "dataset": dataset}), 400)
        await still_serves(client)
    named = await run_query(client, "states_mean", {"question": OBESITY, "dataset": "default"})
    assert named == await run_query(client, "states_mean", {"question": OBESITY})


# ---------------------------------------------------------------------------------------------
# Restart on the same state dir (in process)


async def test_a_restart_keeps_every_result_byte_for_byte_and_continues_ids(tmp_path):
    config = Config(data=SAMPLE, state_dir=tmp_path / "state", workers=2)

    async with TestClient(TestServer(create_app(config))) as client:
        ids = [
            await submit(client, query, body_for(query, question))
            for query in QUERIES
            for question in (OBESITY, MUSCLE)
        ]
        saved = {}
        for job_id in ids:
            await wait_result(client, job_id)
            saved[job_id] = await (await client.get(f"/api/get_results/{job_id}")).read()
    assert ids == [f"job_id_{n}" for n in range(1, 19)]

    async with TestClient(TestServer(create_app(config))) as client:
        for n, (job_id, body) in enumerate(saved.items(), start=1):
            assert await (await client.get(f"/api/get_results/{job_id}")).read() == body, job_id
            assert await (await client.get(f"/api/get_results/{n}")).read() == body, n
        jobs = await (await client.get("/api/jobs")).json()
        assert jobs["data"] == [{job_id: "done"} for job_id in ids]
        assert await (await client.get("/api/num_jobs")).json() == {"num_jobs": 0}
        assert await submit(client, "global_mean", {"question": OBESITY}) == "job_id_19"


async def test_a_stopped_app_holds_no_semaphore_once_aiohttp_lets_it_go(tmp_path):
    """Only aiohttp's cache keeps a stopped app's pool (and its semaphores): nothing of ours does."""
    before = own_semaphores()

    async def serve_once():  # the client, its server and its app are locals of this call only
        async with TestClient(TestServer(create_app(Config(data=SAMPLE, state_dir=tmp_path, workers=2)))) as client:
            await still_serves(client)
            assert len(own_semaphores() - before) >= 6, "a live pool's queues"

    await serve_once()
    release_stopped_apps()
    assert own_semaphores() == before


async def test_a_stop_with_jobs_in_flight_drains_them_before_the_restart(tmp_path):
    config = Config(data=SAMPLE, state_dir=tmp_path / "state", workers=2)

    async with TestClient(TestServer(create_app(config))) as client:
        ids = await asyncio.gather(*(submit(client, query, body_for(query)) for query in QUERIES * 30))
        # Leave at once: stopping drains what was accepted.

    async with TestClient(TestServer(create_app(config))) as client:
        for job_id in ids:
            reply = await (await client.get(f"/api/get_results/{job_id}")).json()
            assert reply["status"] == "done", (job_id, reply)
        assert await submit(client, "global_mean", {"question": OBESITY}) == f"job_id_{len(ids) + 1}"


# ---------------------------------------------------------------------------------------------
# Data sets (an extension): an upload answers exactly as the same file loaded at start


async def test_an_uploaded_data_set_answers_as_the_same_file_loaded_at_start(make_client):
    if not ASSIGNMENT_SAMPLE.exists():
        pytest.skip(f"{ASSIGNMENT_SAMPLE} is absent")
    client = await make_client(data=ASSIGNMENT_SAMPLE)
    form = aiohttp.FormData()
    form.add_field("file", ASSIGNMENT_SAMPLE.read_bytes(), filename=ASSIGNMENT_SAMPLE.name, content_type="text/csv")
    response = await client.post("/api/datasets", data=form)
    assert response.status == 200, await response.text()
    uploaded = (await response.json())["dataset"]
    listed = {entry["dataset"]: entry for entry in (await (await client.get("/api/datasets")).json())["datasets"]}
    assert listed[uploaded]["questions"] == listed["default"]["questions"]
    assert listed[uploaded]["states"] == listed["default"]["states"]
    rows = load_rows(ASSIGNMENT_SAMPLE)
    for question in listed["default"]["questions"]:
        states = sorted(
            {row["LocationDesc"] for row in rows if row["Question"] == question and row["Data_Value"] is not None}
        )
        for query in QUERY_NAMES:
            body = {"question": question}
            if query in STATE_QUERIES:
                body["state"] = states[0]
            if query in ("best5", "worst5") and question not in (*QUESTIONS_BEST_IS_MIN, *QUESTIONS_BEST_IS_MAX):
                continue
            at_start = await run_query(client, query, body)
            assert await run_query(client, query, {**body, "dataset": uploaded}) == at_start, (query, body)


async def test_an_upload_is_kept_across_a_restart_and_can_be_removed(make_client, tmp_path):
    if not ASSIGNMENT_SAMPLE.exists():
        pytest.skip(f"{ASSIGNMENT_SAMPLE} is absent")
    client = await make_client()
    response = await client.post(
        "/api/datasets", data=ASSIGNMENT_SAMPLE.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    uploaded = (await response.json())["dataset"]
    body = {"question": OBESITY, "dataset": uploaded}
    before = await run_query(client, "states_mean", body)
    await client.close()

    client = await make_client()
    assert await run_query(client, "states_mean", body) == before
    assert (await client.delete("/api/datasets/default")).status == 400
    assert (await client.delete(f"/api/datasets/{uploaded}")).status == 200
    await expect_error(await client.post("/api/states_mean", json=body), 400)
    assert (await client.delete(f"/api/datasets/{uploaded}")).status == 404


# ---------------------------------------------------------------------------------------------
# The trend extension: the same validation, job semantics and "dataset" field as every other query


async def test_trend_national_and_per_state_match_the_reference(client):
    rows = load_rows(SAMPLE)
    national = await run_query(client, "trend", {"question": OBESITY})
    assert national and list(national) == sorted(national)
    assert_matches(national, reference(rows, "trend", OBESITY))
    ohio = await run_query(client, "trend", {"question": OBESITY, "state": "Ohio", "dataset": "default"})
    assert_matches(ohio, reference(rows, "trend", OBESITY, "Ohio"))
    narrowed = await run_query(client, "trend", {"question": OBESITY, "years": [2015, 2017]})
    assert narrowed == {year: mean for year, mean in national.items() if 2015 <= int(year[:4]) <= 2017}
    assert await run_query(client, "trend", {"question": OBESITY, "state": None}) == national


@pytest.mark.parametrize(
    "body",
    [
        {"state": "Ohio"},
        {"question": OBESITY, "state": "Atlantis"},
        {"question": OBESITY, "state": 7},
        {"question": OBESITY, "years": [2017, 2015]},
        {"question": OBESITY, "dataset": "nope"},
    ],
)
async def test_a_bad_trend_body_is_400(client, body):
    await expect_error(await client.post("/api/trend", json=body), 400)
    await still_serves(client)


async def test_a_state_without_a_value_is_400_naming_the_pair(make_client, gappy_csv):
    client = await make_client(data=gappy_csv)
    for state in ("Iowa", "Texas"):
        reason = await expect_error(await client.post("/api/trend", json={"question": MUSCLE, "state": state}), 400)
        assert state in reason and MUSCLE in reason, reason
    assert await run_query(client, "trend", {"question": MUSCLE}) == {"2015": 40.0, "2017": 45.0}
    # The state has values, none in the years asked: an empty series, not an error.
    assert await run_query(client, "trend", {"question": MUSCLE, "state": "Utah", "years": [2015, 2016]}) == {}


async def test_a_data_set_without_year_columns_has_no_trend(make_client, tmp_path):
    data = write_csv(
        tmp_path / "no-years.csv",
        [("Ohio", OBESITY, "30.0", "Total", "Total")],
        header=("LocationDesc", "Question", "Data_Value", "StratificationCategory1", "Stratification1"),
    )
    client = await make_client(data=data)
    reason = await expect_error(await client.post("/api/trend", json={"question": OBESITY}), 400)
    assert "YearStart" in reason
    assert await run_query(client, "states_mean", {"question": OBESITY}) == {"Ohio": 30.0}


HEADER = "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([HEADER], "the file has a header but no data rows"),
        ([HEADER + "Ohio,Q,,Sex,Male\n"], "no row has a Data_Value"),
        (
            [HEADER.replace("\n", ",Data_Value\n") + "Ohio,Q,1,Sex,Male,2\n"],
            "names the column Data_Value more than once",
        ),
        ([HEADER + "Ohio,Q,1,Sex,Male\n", HEADER + "Utah,Q,2,Sex,Male\n"], "more than one 'file' field"),
    ],
    ids=["header only", "no value", "a column twice", "two files"],
)
async def test_an_ambiguous_or_empty_upload_is_refused_and_not_kept(make_client, fields, reason):
    client = await make_client()
    form = aiohttp.FormData()
    for content in fields:
        form.add_field("file", content.encode(), filename="odd.csv", content_type="text/csv")
    response = await client.post("/api/datasets", data=form)
    assert response.status == 400 and reason in (await response.json())["reason"], await response.text()
    listed = (await (await client.get("/api/datasets")).json())["datasets"]
    assert [entry["dataset"] for entry in listed] == ["default"]


@pytest.mark.parametrize(
    ("path", "content_type", "limit_option"),
    [("/api/datasets", "text/csv", "max_upload"), ("/api/states_mean", "application/json", "max_body")],
    ids=["upload", "query"],
)
async def test_a_body_declared_over_the_limit_gets_413_before_it_is_sent(make_client, path, content_type, limit_option):
    limit = 1024
    client = await make_client(**{limit_option: limit})
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
    writer.write(f"{head}Content-Length: {limit + 1}\r\n\r\n".encode())  # and no body: the reply must not wait for it
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert b" 413 " in status_line
