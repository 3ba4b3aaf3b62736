"""The routes of API.md. Handlers validate, hand off and answer; none of them waits on a worker."""

from __future__ import annotations

import re

import orjson
from aiohttp import web

from compute.queries import KERNELS
from server.admin import admin_only
from server.config import PROJECT_ROOT
from server.middleware import QUERY_ROUTE, error_response, quoted
from server.openapi import openapi_bytes
from server.service import SERVICE
from server.shared_datasets import parse_shared
from server.validation import BadRequest, parse_query
from store.jobstore import StoreUnavailable

JSON = "application/json"
STATIC_DIR = PROJECT_ROOT / "static"
STATIC_ROOT = STATIC_DIR.resolve()
MAX_WAIT_S = 30.0


def json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


async def submit_query(request: web.Request) -> web.Response:
    """POST /api/<query>: 200 {"job_id": ...} at once; the work happens in the pool."""
    service = request.app[SERVICE]
    if service.draining:
        return error_response(503, "shutting down")
    if unreachable := service.unreachable:
        return error_response(503, unreachable, {"Retry-After": "1"})
    if len(service.jobs.running) >= service.max_queued:
        return error_response(
            503, f"too many jobs queued ({service.max_queued}); try again shortly", {"Retry-After": "1"}
        )
    kind = request.match_info["query"]
    try:
        body = await request.read()
        query = (
            await parse_shared(service.registry, kind, body)
            if service.shared
            else parse_query(kind, body, service.catalogs)
        )
    except BadRequest as error:
        return error_response(400, str(error))
    try:
        job_id = await (service.shared.open(kind, await request.read()) if service.shared else service.jobs.open())
    except StoreUnavailable as error:
        return error_response(503, str(error), {"Retry-After": "1"})
    except Exception as error:
        return error_response(503, f"cannot reserve a job id in the ledger: {error}", {"Retry-After": "1"})
    service.answers.submit(job_id, query)
    return json_bytes(b'{"job_id":"job_id_%d"}' % job_id)


MAX_JOB_ID_DIGITS = 18  # an int64; a longer id was never issued (and int() refuses over 4,300 digits)
WAIT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")  # plain ASCII decimals: not 1_0, 1e3, nan or non-ASCII digits


def parse_job_id(text: str) -> int | None:
    """`job_id_<n>` or the bare `<n>`, in ASCII digits."""
    digits = text.removeprefix("job_id_")
    if not (digits.isascii() and digits.isdecimal() and len(digits) <= MAX_JOB_ID_DIGITS):
        return None
    return int(digits)


def parse_wait(request: web.Request, grace_s: float) -> float:
    """Seconds get_results may wait for a running job: ?wait=<s> (at most MAX_WAIT_S), else the
    server's short poll grace."""
    text = request.query.get("wait")
    if text is None:
        return grace_s
    if not WAIT.fullmatch(text):
        raise BadRequest(f"'wait' must be a number of seconds in plain digits, not {quoted(text)}")
    wait_s = float(text)
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise BadRequest(f"'wait' must be between 0 and {MAX_WAIT_S:g} seconds")
    return wait_s


async def get_results(request: web.Request) -> web.Response:
    """A job's state. For a running job it answers as soon as the job finishes, or with
    "running" once the wait is over: a poll loop costs the server one request, not dozens."""
    service = request.app[SERVICE]
    try:
        wait_s = parse_wait(request, service.poll_grace_s)
    except BadRequest as error:
        return error_response(400, str(error))
    job_id = parse_job_id(request.match_info["job_id"]) or 0
    if wait_s and job_id in service.jobs.running:  # a finished job is answered without an await
        await service.jobs.wait(job_id, wait_s)
    if service.shared is None:
        status, reply = service.jobs.lookup(job_id)
        return json_bytes(reply, status)
    try:
        status, reply = await service.shared.lookup(job_id, wait_s)
    except StoreUnavailable as error:
        return error_response(503, str(error), {"Retry-After": "1"})
    return json_bytes(reply, status)


async def list_jobs(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.shared is None:
        statuses = service.jobs.statuses
        listed = [(job_id, statuses[job_id]) for job_id in sorted(statuses)]
    else:
        try:
            listed = await service.shared.store.statuses()
        except StoreUnavailable as error:
            return error_response(503, str(error), {"Retry-After": "1"})
    data = [{f"job_id_{job_id}": status} for job_id, status in listed]
    return json_bytes(orjson.dumps({"status": "done", "data": data}))


async def num_jobs(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.shared is None:
        return json_bytes(orjson.dumps({"num_jobs": len(service.jobs.running)}))
    try:
        running = await service.shared.store.running()
    except StoreUnavailable as error:
        return error_response(503, str(error), {"Retry-After": "1"})
    return json_bytes(orjson.dumps({"num_jobs": running}))


@admin_only
async def graceful_shutdown(request: web.Request) -> web.Response:
    """Stop taking queries; "running" while accepted jobs remain, then "done"."""
    service = request.app[SERVICE]
    service.draining = True
    running = len(service.jobs.running)
    if service.shared is not None and not running:
        try:
            running = await service.shared.node_running()
        except StoreUnavailable as error:
            return error_response(503, str(error), {"Retry-After": "1"})
    return json_bytes(orjson.dumps({"status": "running" if running else "done"}))


async def health(request: web.Request) -> web.Response:
    return json_bytes(orjson.dumps(await request.app[SERVICE].health()))


async def page(request: web.Request) -> web.FileResponse:
    """The page for people: upload a CSV, ask a question, see a table and a chart."""
    return web.FileResponse(STATIC_DIR / "index.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    """A file of the page; anything else (missing, a directory, outside static/) is a JSON 404.
    (aiohttp's own static route answers a missing file with an empty 404.)"""
    path = (STATIC_DIR / request.match_info["path"]).resolve()
    if not path.is_relative_to(STATIC_ROOT) or not path.is_file():
        return error_response(404, "no such file")
    return web.FileResponse(path)


async def route_list(request: web.Request) -> web.Response:
    """GET /api: the routes, for people exploring with curl."""
    routes = sorted(
        {
            f"{route.method} {route.resource.canonical}"
            for route in request.app.router.routes()
            if route.resource and route.method != "HEAD"
        }
    )
    return json_bytes(orjson.dumps({"service": "Le Stats Sportif", "routes": routes}))


async def openapi(request: web.Request) -> web.Response:
    return json_bytes(openapi_bytes(request.app[SERVICE].catalogs))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/{{query:{}}}".format("|".join(KERNELS)), submit_query, name=QUERY_ROUTE)
    app.router.add_get("/api/get_results/{job_id}", get_results)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/num_jobs", num_jobs)
    app.router.add_get("/api/graceful_shutdown", graceful_shutdown)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api", route_list)
    app.router.add_get("/", page)
    app.router.add_get("/static/{path:.+}", static_file)
