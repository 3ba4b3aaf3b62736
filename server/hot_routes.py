"""The two routes every job uses, POST /api/<query> and GET /api/get_results/<id>, as plain
functions of the service.

Both the aiohttp handlers (`server/routes.py`) and the connection-level fast path
(`server/fastpath.py`) answer through these, so the two cannot drift apart. An Answer is what the
client sees: status, JSON body, extra headers. Each route has a part that answers without an await
whenever it can (the usual case: the embedded store, an id left in the reserved block, a finished
job) and an async rest for what must wait (a long-poll, reserving ids, a shared store).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from compute.queries import Query
from server.middleware import error_body, quoted
from server.service import Service
from server.shared_datasets import parse_shared
from server.validation import BadRequest, parse_query
from store.jobstore import StoreUnavailable

Answer = tuple[int, bytes, Mapping[str, str] | None]
RETRY = {"Retry-After": "1"}
MAX_WAIT_S = 30.0
MAX_JOB_ID_DIGITS = 18  # an int64; a longer id was never issued (and int() refuses over 4,300 digits)
WAIT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")  # plain ASCII decimals: not 1_0, 1e3, nan or non-ASCII digits


class Poll(NamedTuple):
    """A get_results that must wait (a long-poll on a running job, or a shared store's read)."""

    job_id: int
    wait_s: float


def error_answer(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Answer:
    return status, error_body(reason), headers


def refuse_query(service: Service) -> Answer | None:
    """Why no query is taken now (503), before its body is read; None: go on."""
    if service.draining:
        return error_answer(503, "shutting down")
    if unreachable := service.unreachable:
        return error_answer(503, unreachable, RETRY)
    if len(service.jobs.running) >= service.max_queued:
        return error_answer(503, f"too many jobs queued ({service.max_queued}); try again shortly", RETRY)
    return None


def _accepted(service: Service, job_id: int, query: Query, known: bytes | None = None) -> Answer:
    service.answers.submit(job_id, query, known)
    return 200, b'{"job_id":"job_id_%d"}' % job_id, None


def submit_at_once(service: Service, kind: str, body: bytes) -> Answer | None:
    """POST /api/<kind> without an await: None when it needs one (then `submit`)."""
    if service.shared is not None:
        return None
    try:
        query = parse_query(kind, body, service.catalogs)
    except BadRequest as error:
        return error_answer(400, str(error))
    job_id = service.jobs.open_now()
    return None if job_id is None else _accepted(service, job_id, query)


async def submit(service: Service, kind: str, body: bytes) -> Answer:
    """POST /api/<kind>: 200 {"job_id": ...} at once; the work happens in the pool."""
    if (answer := submit_at_once(service, kind, body)) is not None:
        return answer
    try:
        query = (
            await parse_shared(service.registry, kind, body)
            if service.shared
            else parse_query(kind, body, service.catalogs)
        )
    except BadRequest as error:
        return error_answer(400, str(error))
    try:
        if service.shared:
            cache = service.answers.cache
            job_id, known = await service.shared.open(kind, body, bool(cache.max_entries) and query not in cache)
        else:
            job_id, known = await service.jobs.open(), None
    except StoreUnavailable as error:
        return error_answer(503, str(error), RETRY)
    except Exception as error:
        return error_answer(503, f"cannot reserve a job id in the ledger: {error}", RETRY)
    return _accepted(service, job_id, query, known)


def parse_job_id(text: str) -> int | None:
    """`job_id_<n>` or the bare `<n>`, in ASCII digits."""
    digits = text.removeprefix("job_id_")
    if not (digits.isascii() and digits.isdecimal() and len(digits) <= MAX_JOB_ID_DIGITS):
        return None
    return int(digits)


def parse_wait(text: str | None, grace_s: float) -> float:
    """Seconds get_results may wait for a running job: ?wait=<s> (at most MAX_WAIT_S), else the
    server's short poll grace."""
    if text is None:
        return grace_s
    if not WAIT.fullmatch(text):
        raise BadRequest(f"'wait' must be a number of seconds in plain digits, not {quoted(text)}")
    wait_s = float(text)
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise BadRequest(f"'wait' must be between 0 and {MAX_WAIT_S:g} seconds")
    return wait_s


def results_at_once(service: Service, job_text: str, wait_text: str | None) -> Answer | Poll:
    """A job's state, with no await for a finished (or unknown) job; a Poll for `results_after`."""
    try:
        wait_s = parse_wait(wait_text, service.poll_grace_s)
    except BadRequest as error:
        return error_answer(400, str(error))
    job_id = parse_job_id(job_text) or 0
    local = service.shared is None or service.shared.holds(job_id)  # else only the store knows it
    if local and not (wait_s and job_id in service.jobs.running):
        return (*service.jobs.lookup(job_id), None)
    return Poll(job_id, wait_s)


async def results_after(service: Service, poll: Poll) -> Answer:
    """For a running job, answer as soon as it finishes, or "running" once the wait is over: a poll
    loop costs the server one request, not dozens."""
    job_id, wait_s = poll
    if wait_s and job_id in service.jobs.running:
        await service.jobs.wait(job_id, wait_s)
    if service.shared is None:
        return (*service.jobs.lookup(job_id), None)
    try:
        status, reply = await service.shared.lookup(job_id, wait_s)
    except StoreUnavailable as error:
        return error_answer(503, str(error), RETRY)
    return status, reply, None
