"""Turn a query's JSON body into a `Query` in codes, or refuse it with a reason a person can read.

Everything that can be known without computing is checked here, in the request, so bad input is a
400 at once and never a failed job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from compute.queries import KNOWN_DIRECTION, MAY_TAKE_STATE, NEEDS_DIRECTION, NEEDS_STATE, NEEDS_YEARS, Query
from server.middleware import quoted
from store.cells import Catalog

DEFAULT_DATASET = "default"


class BadRequest(Exception):
    """A request the API refuses with 400; the message is the reason."""


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise BadRequest("the body must be a JSON object")
    return fields


def text_field(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise BadRequest(f"the field {name!r} is missing")
    if not isinstance(value, str):
        raise BadRequest(f"the field {name!r} must be a string")
    return value


def parse_years(fields: dict[str, Any], catalog: Catalog) -> tuple[int, int] | None:
    """The `years` extension: [from, to], inclusive, on a data set that has YearStart/YearEnd."""
    years = fields.get("years")
    if years is None:
        return None
    if (
        not isinstance(years, list)
        or len(years) != 2
        or not all(isinstance(year, int) and not isinstance(year, bool) for year in years)
        or years[0] > years[1]
    ):
        raise BadRequest("'years' must be [from, to]: two whole years, from <= to")
    if catalog.year_range is None:
        raise BadRequest(f"the data set {catalog.name!r} has no YearStart/YearEnd columns to filter by")
    return years[0], years[1]


def parse_query(kind: str, body: bytes, catalogs: Mapping[str, Catalog]) -> Query:
    """Validate a query of `kind` against the data set it names (the start-up one by default)."""
    fields = parse_body(body)
    dataset = fields.get("dataset", DEFAULT_DATASET)
    if not isinstance(dataset, str):
        raise BadRequest("'dataset' must be text: a data-set id from GET /api/datasets")
    if dataset not in catalogs:
        raise BadRequest(f"unknown data set: {quoted(dataset)}")
    catalog = catalogs[dataset]
    question = text_field(fields, "question")
    question_code = catalog.question_codes.get(question)
    if question_code is None:
        raise BadRequest(f"unknown question: {quoted(question)}")
    if kind in NEEDS_DIRECTION and question not in KNOWN_DIRECTION:
        raise BadRequest(f"which direction is better is not known for the question {question!r}")
    if kind in NEEDS_YEARS and catalog.year_range is None:
        raise BadRequest(f"the data set {catalog.name!r} has no YearStart/YearEnd columns: it has no {kind}")
    state_code = -1
    if kind in NEEDS_STATE or (kind in MAY_TAKE_STATE and fields.get("state") is not None):
        state = text_field(fields, "state")
        state_code = catalog.state_codes.get(state, -1)
        if state_code < 0:
            raise BadRequest(f"unknown state: {quoted(state)}")
        if (question_code, state_code) not in catalog.answered:
            raise BadRequest(f"the state {state!r} has no value for the question {question!r}")
    return Query(kind, question_code, state_code, parse_years(fields, catalog), dataset)
