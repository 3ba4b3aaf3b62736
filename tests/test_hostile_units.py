"""Issue 9's defences that are plain functions, tested in isolation: bounded reasons, strict job ids
and waits, secrets kept out of log lines, the admin routes' origin and Host checks, bounded OpenAPI
enums, burst logging, the durable data-set index, and workers that follow segments, not names."""

import asyncio
import json
import logging
from pathlib import Path

import pytest
from reference import load_rows, reference

from compute import worker
from compute.queries import Query, run_query
from server.admin import host_name, is_loopback_name, same_origin
from server.bursts import BurstLog
from server.datasets import DatasetRegistry
from server.hot_routes import parse_job_id
from server.middleware import MAX_REASON, error_response, quoted
from server.openapi import MAX_ENUM, openapi_document
from server.redact import loggable, redact
from store.dataset import load_dataset, load_upload, publish
from store.uploads import write_durably

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
OBESITY = "Percent of adults aged 18 years and older who have obesity"
HEADER = "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"


def test_a_reason_quotes_only_an_excerpt_of_what_was_sent():
    huge = "x" * 1_000_000
    assert len(quoted(huge)) < 200
    body = json.loads(error_response(400, f"unknown question: {quoted(huge)}").body)
    assert body["status"] == "error" and len(body["reason"]) < 300
    assert len(json.loads(error_response(400, huge).body)["reason"]) <= MAX_REASON + 50
    assert quoted("Ohio") == "'Ohio'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("job_id_12", 12),
        ("12", 12),
        ("9" * 5000, None),
        ("9" * 19, None),
        ("١٢", None),
        ("１２", None),
        ("1_2", None),
        ("-1", None),
        ("job_id_", None),
    ],
)
def test_job_ids_are_short_ascii_numbers(text, expected):
    assert parse_job_id(text) == expected


def test_a_secret_in_a_query_string_or_path_is_never_logged():
    assert "s3cret" not in redact("token=s3cret&wait=1", None)
    assert "wait=1" in redact("token=s3cret&wait=1", None)
    assert "abc" not in redact("x=1&access_token=abc&api_key=abc&Password=abc", None)
    assert "topsecretvalue" not in loggable("/api/graceful_shutdown/topsecretvalue", "topsecretvalue")
    assert "topsecretvalue" not in loggable("q=topsecretvalue", "topsecretvalue")
    assert loggable("/api/num_jobs", "t0k") == "/api/num_jobs"
    assert len(loggable("/" + "a" * 9000, None)) < 600


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("127.0.0.1:5000", "127.0.0.1"),
        ("[::1]:80", "::1"),
        ("LocalHost", "localhost"),
        ("evil.example:5000", "evil.example"),
    ],
)
def test_host_names(host, name):
    assert host_name(host) == name


def test_only_loopback_names_or_the_configured_host_are_loopback_names():
    for name in ("localhost", "127.0.0.1", "127.8.9.1", "::1", "app.localhost"):
        assert is_loopback_name(name, None), name
    for name in ("evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "0.0.0.0", ""):
        assert not is_loopback_name(name, None), name
    assert is_loopback_name("myhost", "myhost")


def test_same_origin_is_scheme_host_and_port():
    assert same_origin("http://127.0.0.1:5000", "127.0.0.1:5000")
    assert same_origin("http://localhost", "localhost:80")
    assert not same_origin("http://evil.example", "127.0.0.1:5000")
    assert not same_origin("http://127.0.0.1:5001", "127.0.0.1:5000")
    assert not same_origin("null", "127.0.0.1:5000")
    assert not same_origin("file://", "127.0.0.1:5000")


def test_openapi_enums_are_bounded(tmp_path):
    rows = "".join(f"Ohio,Q{n},1.0,Total,Total\n" for n in range(MAX_ENUM + 1))
    wide = load_upload((HEADER + rows).encode(), "upload1", "wide.csv")
    sample = load_dataset(SAMPLE)
    document = openapi_document({"default": sample.catalog, "upload1": wide.catalog})
    question = document["paths"]["/api/states_mean"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "enum" not in question["properties"]["question"]
    assert question["properties"]["dataset"]["enum"] == ["default", "upload1"]
    assert len(json.dumps(document)) < 100_000
    small = openapi_document({"default": sample.catalog})
    schema = small["paths"]["/api/state_mean"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert OBESITY in schema["properties"]["question"]["enum"]
    assert "Ohio" in schema["properties"]["state"]["enum"]


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


async def test_a_burst_of_one_error_is_one_line_and_a_count():
    logger = logging.getLogger("burst-test")  # outside "lestats", whose handlers other tests replace
    collect = Collect()
    logger.addHandler(collect)
    try:
        bursts = BurstLog(logger, window_s=0.05)
        for _ in range(500):
            bursts.error("kind", "something went wrong")
        bursts.error("other", "something else")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(collect.messages) >= 3:
                break
    finally:
        logger.removeHandler(collect)
    assert collect.messages[:2] == ["something went wrong", "something else"]
    assert collect.messages[2:] == ["kind: 499 more in the last 0.05 s"]


def test_write_durably_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "index.json"
    write_durably(target, b"one")
    write_durably(target, b"two")
    assert target.read_bytes() == b"two"
    assert [path.name for path in tmp_path.iterdir()] == ["index.json"]


def csv_bytes(value):
    return f"{HEADER}Ohio,{OBESITY},{value},Total,Total\n".encode()


async def test_upload_ids_are_never_reused_across_removal_and_restart(tmp_path):
    registry = DatasetRegistry(tmp_path)
    first = await registry.add(csv_bytes(1.0), "a.csv")
    await registry.remove(first.catalog.name)
    second = await registry.add(csv_bytes(2.0), "b.csv")
    assert (first.catalog.name, second.catalog.name) == ("upload1", "upload2")
    await registry.remove(second.catalog.name)
    registry.close()
    again = DatasetRegistry(tmp_path)
    assert await again.restore() == []
    third = await again.add(csv_bytes(3.0), "c.csv")
    assert third.catalog.name == "upload3"
    again.close()


async def test_concurrent_uploads_all_survive_and_refused_ones_leave_nothing(tmp_path):
    registry = DatasetRegistry(tmp_path)
    contents = [csv_bytes(n) if n % 3 else b"not,a,cdc,file\n1,2,3,4\n" for n in range(30)]
    results = await asyncio.gather(
        *(registry.add(content, f"f{n}.csv") for n, content in enumerate(contents)), return_exceptions=True
    )
    accepted = {result.catalog.name: n for n, result in enumerate(results) if not isinstance(result, BaseException)}
    assert len(accepted) == 20
    assert all(isinstance(result, ValueError) for result in results if isinstance(result, BaseException))
    index = json.loads((tmp_path / "datasets" / "index.json").read_bytes())
    assert set(index["datasets"]) == set(accepted)
    registry.close()
    again = DatasetRegistry(tmp_path)
    assert sorted(await again.restore()) == sorted(accepted)
    for name, n in accepted.items():
        assert run_query(again.datasets[name], "global_mean", OBESITY) == {"global_mean": float(n)}, name
    assert sorted(path.name for path in (tmp_path / "datasets").iterdir()) == sorted(
        ["index.json", *(f"{name}.csv" for name in accepted)]
    )
    again.close()


def test_a_worker_answers_from_the_segment_the_batch_names_not_from_a_name(tmp_path):
    """A worker holding one segment under a name re-attaches when a batch names another segment
    under that name, and detaches from segments no longer live."""
    old = publish(load_upload(csv_bytes(1.0), "upload1", "a.csv"), "t9old")
    new = publish(load_upload(csv_bytes(7.0), "upload1", "b.csv"), "t9new")
    query = Query("state_mean", 0, 0, None, "upload1")
    try:
        assert worker.sync_datasets(worker.DatasetSync(frozenset({old.layout.segment}), {"upload1": old.layout})) == {}
        assert json.loads(worker.reply_to(query, {})[1])["data"] == {"Ohio": 1.0}
        sync = worker.DatasetSync(frozenset({new.layout.segment}), {"upload1": new.layout})
        assert worker.sync_datasets(sync) == {}
        status, reply = worker.reply_to(query, {})
        assert status == "done" and json.loads(reply)["data"] == {"Ohio": 7.0}
        assert worker._datasets["upload1"].layout == new.layout
        assert worker.sync_datasets(worker.DatasetSync(frozenset(), {})) == {}
        assert "upload1" not in worker._datasets
        status, reply = worker.reply_to(query, {})
        assert (status, json.loads(reply)["reason"]) == ("error", "the data set 'upload1' was removed")
    finally:
        for dataset in worker._datasets.values():
            dataset.close()
        worker._datasets.clear()
        old.close()
        new.close()


def test_a_new_worker_skips_published_data_sets_removed_since_the_pool_started():
    """The pool's initializer arguments name the data sets of the day the pool started: one removed
    since must not raise (a worker dying in its initializer is replaced by one dying the same way)."""
    kept = publish(load_upload(csv_bytes(3.0), "upload5", "a.csv"), "t9kept")
    gone = publish(load_upload(csv_bytes(1.0), "upload6", "b.csv"), "t9gone6")
    layout = gone.layout
    gone.close()
    try:
        worker.attach_published({"upload6": layout, "upload5": kept.layout})
        assert sorted(worker._datasets) == ["upload5"]
        status, reply = worker.reply_to(Query("state_mean", 0, 0, None, "upload5"), {})
        assert (status, json.loads(reply)["data"]) == ("done", {"Ohio": 3.0})
    finally:
        for dataset in worker._datasets.values():
            dataset.close()
        worker._datasets.clear()
        kept.close()


def test_a_removed_segment_fails_only_its_own_jobs(tmp_path):
    default = publish(load_dataset(SAMPLE), "t9default")
    gone = publish(load_upload(csv_bytes(1.0), "upload4", "a.csv"), "t9gone")
    layout = gone.layout
    gone.close()  # unlinked before the worker attached
    sync = worker.DatasetSync(
        frozenset({default.layout.segment, layout.segment}), {"default": default.layout, "upload4": layout}
    )
    try:
        failures = worker.sync_datasets(sync)
        assert failures == {"upload4": "the data set 'upload4' was removed"}
        rows = load_rows(SAMPLE)
        catalog = default.catalog
        query = Query("state_mean", catalog.question_codes[OBESITY], catalog.state_codes["Ohio"], None, "default")
        status, reply = worker.reply_to(query, failures)
        assert status == "done"
        assert json.loads(reply)["data"] == pytest.approx(reference(rows, "state_mean", OBESITY, "Ohio"), rel=1e-9)
        status, reply = worker.reply_to(Query("state_mean", 0, 0, None, "upload4"), failures)
        assert (status, json.loads(reply)["reason"]) == ("error", "the data set 'upload4' was removed")
    finally:
        for dataset in worker._datasets.values():
            dataset.close()
        worker._datasets.clear()
        default.close()
