"""The OpenAPI document describes the live server: schemathesis generates requests from it against
`python -m server`, and every reply must have a documented status and match its schema (no 5xx).

One check is left out: "a schema-valid request is accepted". The API has rules a JSON schema cannot
state (years [from, to] with from <= to; a state with no value for the question), which it refuses
with a documented 400 and a reason; the document lists questions, states and data sets as enums,
so every other schema-valid request is accepted."""

from __future__ import annotations

import json
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from serverproc import Server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Server:
    server = Server(tmp_path_factory.mktemp("openapi") / "state")
    try:
        server.wait_ready()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def api_schema(live: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.url}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema").exclude(operation_id="graceful_shutdown")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_reply_matches_the_document(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])


def test_document_lists_every_route(live: Server) -> None:
    with urllib.request.urlopen(f"{live.url}/api/openapi.json") as reply:
        document = json.load(reply)
    paths = document["paths"]
    assert document["openapi"].startswith("3.")
    for route in (
        "/api/states_mean",
        "/api/state_mean_by_category",
        "/api/get_results/{job_id}",
        "/api/jobs",
        "/api/num_jobs",
        "/api/graceful_shutdown",
        "/api/health",
    ):
        assert route in paths
    assert paths["/api/state_mean"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "question",
        "state",
    ]
