"""The OpenAPI 3 document of the whole API, served at GET /api/openapi.json.

Built from the same tables the routes use (the query kinds, which ones need a state) and from the
data sets loaded now: a question or state is valid only if a data set holds it, so the document
lists them as enums, and a request the document calls valid is one the server accepts.

An enum is listed only up to MAX_ENUM names: an upload with 100,000 questions once made the
document 37 MB, built anew on every request of a public route. Past that the field is a plain
string (GET /api/datasets lists the names). The document is built once per set of loaded data sets:
ids are never reused, so the ids name the content.
"""

from __future__ import annotations

from typing import Any

import orjson

from compute.queries import KERNELS, NEEDS_STATE
from store.cells import Catalog

MAX_ENUM = 1000


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = {
    "type": "object",
    "required": ["status", "reason"],
    "properties": {"status": {"enum": ["error"]}, "reason": {"type": "string"}},
}
MEANS = {"type": "object", "additionalProperties": {"type": "number"}}
BY_CATEGORY = {"type": "object", "additionalProperties": {"oneOf": [{"type": "number"}, MEANS]}}
JOB_REPLY = {
    "oneOf": [
        {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["running"]}}},
        {
            "type": "object",
            "required": ["status", "data"],
            "properties": {"status": {"enum": ["done"]}, "data": BY_CATEGORY},
        },
        ERROR,
    ]
}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def _one_of(names: set[str] | None, description: str) -> dict[str, Any]:
    """A string field whose value must be one of `names`: an enum while the list is short
    (None: known to be too long)."""
    if names is None or len(names) > MAX_ENUM:
        return {"type": "string", "description": f"{description} (too many to list: see GET /api/datasets)"}
    return {"type": "string", "enum": sorted(names), "description": description}


def _names(catalogs: dict[str, Catalog], field: str, description: str) -> dict[str, Any]:
    lists: list[tuple[str, ...]] = [getattr(catalog, field) for catalog in catalogs.values()]
    if any(len(names) > MAX_ENUM for names in lists):  # too many anyway: skip a union of 100,000 names
        return _one_of(None, description)
    return _one_of({name for names in lists for name in names}, description)


def _query_body(kind: str, catalogs: dict[str, Catalog]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "question": _names(catalogs, "questions", "a Question of the data set, exactly"),
        "years": {
            "type": "array",
            "nullable": True,
            "items": {"type": "integer"},
            "minItems": 2,
            "maxItems": 2,
            "description": "extension: [from, to] with from <= to, keep rows with YearStart >= from "
            "and YearEnd <= to; only on a data set with YearStart/YearEnd",
        },
        "dataset": _one_of(set(catalogs), "extension: a data set id; default the start-up one"),
    }
    required = ["question"]
    if kind in NEEDS_STATE:
        properties["state"] = _names(catalogs, "states", "a LocationDesc of the data set")
        required.append("state")
    return {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": required, "properties": properties}}},
    }


def _query_path(kind: str, catalogs: dict[str, Catalog]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": kind,
            "summary": f"Start a {kind} job",
            "requestBody": _query_body(kind, catalogs),
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["job_id"],
                        "properties": {"job_id": {"type": "string", "pattern": "^job_id_[0-9]+$"}},
                    },
                    "the job was accepted",
                ),
                "400": _error("the body, question, state or filter is not valid for the data set"),
                "413": _error("the body is over the size limit"),
                "503": _error("shutting down, too many jobs queued, or the ledger is restarting"),
            },
        }
    }


def _get(
    operation: str, summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": operation, "summary": summary, "responses": responses}
    if parameters:
        spec["parameters"] = parameters
    return {"get": spec}


def openapi_document(catalogs: dict[str, Catalog]) -> dict[str, Any]:
    paths: dict[str, Any] = {f"/api/{kind}": _query_path(kind, catalogs) for kind in KERNELS}
    paths["/api/get_results/{job_id}"] = _get(
        "get_results",
        "A job's state, and its data once done",
        {"200": _json(JOB_REPLY, "running, done or error"), "404": _error("never issued, or expired")},
        [
            {
                "name": "job_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "job_id_<n> or <n>",
            }
        ],
    )
    paths["/api/jobs"] = _get(
        "jobs",
        "Every kept job and its state, in id order",
        {
            "200": _json(
                {
                    "type": "object",
                    "required": ["status", "data"],
                    "properties": {
                        "status": {"enum": ["done"]},
                        "data": {
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                },
                "the jobs",
            )
        },
    )
    paths["/api/num_jobs"] = _get(
        "num_jobs",
        "How many jobs are queued or running",
        {
            "200": _json(
                {
                    "type": "object",
                    "required": ["num_jobs"],
                    "properties": {"num_jobs": {"type": "integer", "minimum": 0}},
                },
                "the count",
            )
        },
    )
    paths["/api/graceful_shutdown"] = _get(
        "graceful_shutdown",
        "Admin: stop accepting queries and let accepted jobs finish",
        {
            "200": _json(
                {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["running", "done"]}}},
                "running while jobs remain, done once none do",
            ),
            "403": _error("not a loopback client, or the admin token is missing or wrong"),
        },
    )
    paths["/api/health"] = _get(
        "health",
        "Workers, jobs, ledger and data sets, for operators",
        {
            "200": _json(
                {
                    "type": "object",
                    "required": ["status", "workers"],
                    "properties": {
                        "status": {"enum": ["ok", "degraded"]},
                        "workers": {"type": "array", "items": {"type": "integer"}},
                    },
                },
                "the state of the service",
            )
        },
    )
    paths["/api/openapi.json"] = _get("openapi", "This document", {"200": _json({"type": "object"}, "OpenAPI 3")})
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Le Stats Sportif",
            "version": "1.0",
            "description": "Statistics over the CDC survey Nutrition, Physical Activity, and Obesity (BRFSS).",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}},
    }


_built: tuple[tuple[str, ...], bytes] = ((), b"")


def openapi_bytes(catalogs: dict[str, Catalog]) -> bytes:
    """The document as JSON, built again only when the loaded data sets change."""
    global _built
    key = tuple(catalogs)
    if _built[0] != key or not _built[1]:
        _built = (key, orjson.dumps(openapi_document(catalogs)))
    return _built[1]
