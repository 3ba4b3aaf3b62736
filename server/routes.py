"""The routes of API.md. Handlers validate, hand off and answer; none of them waits on a worker."""

from __future__ import annotations

import orjson
from aiohttp import web

from compute.queries import KERNELS
from server.admin import admin_only
from server.config import PROJECT_ROOT
from server.guards import declared_too_large
from server.hot_routes import Answer, Poll, refuse_query, results_after, results_at_once, submit
from server.middleware import QUERY_ROUTE, error_response
from server.openapi import openapi_bytes
from server.service import SERVICE
from store.jobstore import StoreUnavailable

JSON = "application/json"
STATIC_DIR = PROJECT_ROOT / "static"
STATIC_ROOT = STATIC_DIR.resolve()


def json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def respond(answer: Answer) -> web.Response:
    status, body, headers = answer
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


async def submit_query(request: web.Request) -> web.Response:
    """POST /api/<query> (server/hot_routes.py); a refusal is answered before the body is read."""
    service = request.app[SERVICE]
    if refused := declared_too_large(request, request.client_max_size, "the request body"):
        return refused
    answer = refuse_query(service) or await submit(service, request.match_info["query"], await request.read())
    return respond(answer)


async def get_results(request: web.Request) -> web.Response:
    """GET /api/get_results/<id>[?wait=<s>] (server/hot_routes.py)."""
    service = request.app[SERVICE]
    answer = results_at_once(service, request.match_info["job_id"], request.query.get("wait"))
    return respond(await results_after(service, answer) if isinstance(answer, Poll) else answer)


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
