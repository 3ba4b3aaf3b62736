"""GET, POST and DELETE /api/datasets: list, upload (admin) and remove (admin) data sets.

An extension: original clients never see it. An upload is a multipart form with a `file` field, or
the CSV itself as the body (text/csv). It is read in chunks against its own size limit, since the
query routes' small body limit would refuse any real file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import BodyPartReader, web

from server.admin import admin_only
from server.datasets import DEFAULT
from server.guards import declared_too_large
from server.middleware import error_response, excerpt, quoted
from server.service import SERVICE
from server.shared_datasets import caught_up
from store.csvfile import DataFileError
from store.jobstore import StoreUnavailable
from store.uploads import DamagedIndex

log = logging.getLogger("lestats.datasets")

MAX_UPLOAD = web.AppKey("max_upload", int)
MAX_LABEL = 100  # characters of a file name kept for messages


def unavailable(error: StoreUnavailable) -> web.Response:
    """The job store (Redis, or the node's shared ledger) cannot be reached: try again shortly."""
    return error_response(503, str(error), {"Retry-After": "1"})


class TooLarge(Exception):
    """The upload is over the limit."""


async def read_limited(read_chunk: Callable[[], Awaitable[bytes]], limit: int) -> bytes:
    """Read chunk by chunk, refusing as soon as the total passes `limit`."""
    chunks, size = [], 0
    while chunk := await read_chunk():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The uploaded CSV and a name for it (the file name, for messages)."""
    if request.content_type.startswith("multipart/"):
        try:
            return await read_form(request, limit)
        except DataFileError:
            raise
        except ValueError as error:  # aiohttp's multipart reader: no boundary, a malformed part
            raise DataFileError(f"the upload is not a valid multipart form: {excerpt(str(error))}") from None
    content = await read_limited(functools.partial(request.content.read, 2**16), limit)
    return content, excerpt(request.query.get("name", "upload.csv"), MAX_LABEL)


async def read_form(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The form's one `file` field; two would leave which one is meant to a guess."""
    reader = await request.multipart()
    upload: tuple[bytes, str] | None = None
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == "file":
            if upload is not None:
                raise DataFileError("the form has more than one 'file' field: upload one CSV at a time")
            content = await read_limited(functools.partial(part.read_chunk, 2**16), limit)
            upload = content, excerpt(part.filename or "upload.csv", MAX_LABEL)
    if upload is None:
        raise DataFileError("the form has no 'file' field with the CSV")
    return upload


async def list_datasets(request: web.Request) -> web.Response:
    await caught_up(request.app[SERVICE].registry)
    return web.Response(body=request.app[SERVICE].registry.listing(), content_type="application/json")


@admin_only
async def upload_dataset(request: web.Request) -> web.Response:
    limit = request.app[MAX_UPLOAD]
    if request.app[SERVICE].draining:
        return error_response(503, "shutting down")
    if refused := declared_too_large(request, limit, "the upload"):
        return refused
    try:
        content, label = await read_upload(request, limit)
        if not content:
            raise DataFileError(f"{label}: the file is empty (line 1): expected a CSV header")
        dataset = await request.app[SERVICE].registry.add(content, label)
    except TooLarge:
        return error_response(413, f"the upload is larger than the limit of {limit} bytes")
    except DamagedIndex as error:  # the server's fault, not the upload's (before DataFileError: it is one)
        return damaged(error)
    except DataFileError as error:
        return error_response(400, str(error))
    except StoreUnavailable as error:
        return unavailable(error)
    except OSError as error:
        log.error("cannot keep an upload: %s", error)
        return error_response(503, f"cannot store the upload in the state dir: {error.strerror or error}")
    log.info("uploaded %s as %s: %d rows", label, dataset.catalog.name, dataset.catalog.rows)
    summary = request.app[SERVICE].registry.summary(dataset.catalog.name)
    del summary["removable"], summary["source"]
    return web.Response(body=orjson.dumps(summary), content_type="application/json")


@admin_only
async def delete_dataset(request: web.Request) -> web.Response:
    name = request.match_info["dataset"]
    registry = request.app[SERVICE].registry
    if name == DEFAULT:
        return error_response(400, "the start-up data set cannot be removed")
    if name not in registry.catalogs:
        await caught_up(registry)  # uploaded elsewhere a moment ago?
    if name not in registry.catalogs:
        return error_response(404, f"no data set {quoted(name)}")
    try:
        await registry.remove(name)
    except StoreUnavailable as error:  # kept: the store still lists it, so every process still serves it
        return unavailable(error)
    except DamagedIndex as error:
        return damaged(error)
    request.app[SERVICE].answers.cache.forget_dataset(name)
    log.info("removed data set %s", name)
    return web.Response(body=b'{"status":"done"}', content_type="application/json")


def damaged(error: DamagedIndex) -> web.Response:
    """503 without Retry-After: the uploads' index must be mended by hand before uploads change."""
    log.error("the uploads' index cannot be read: %s", error)
    return error_response(503, f"cannot change the uploaded data sets: {error}")


def add_dataset_routes(app: web.Application, max_upload: int) -> None:
    app[MAX_UPLOAD] = max_upload
    app.router.add_get("/api/datasets", list_datasets)
    app.router.add_post("/api/datasets", upload_dataset)
    app.router.add_delete("/api/datasets/{dataset}", delete_dataset)
