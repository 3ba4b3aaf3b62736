"""The job store in Redis (or Valkey): every node started with the same --store is one service.

Keys (prefix `lestats:`), each change made by one Lua script, so it is atomic and one round trip:
  next            the last id handed out (INCRBY per batch of accepted jobs)
  hw              ids up to here may have been handed out: raised a window ahead of `next`
  epoch           the run_id of the Redis that `next` was last checked against
  status          hash id -> running | done | error
  r:<id>          a finished job's whole get_results reply
  running         hash id -> owner (the front-end running it): num_jobs is its length
  run:<owner>     hash id -> "kind\\nbody": the query, so another node can run it again
  owners          set of owners that may hold running jobs
  alive:<owner>   the owner's heartbeat, with a time to live
  done            sorted set id by finish time: what the retention drops first
  bytes, expired  the bytes of the kept replies; the highest dropped id (404 "expired" below it)
  datasets        hash id -> label of the uploaded data sets; ds:<id> the CSV; dsseq their counter

Never reusing an id: Redis with `appendfsync everysec` can lose the last second of writes, `next`
included. `hw` is raised WINDOW ahead, and only when `next` gets within half a window of it, so a
lost second loses at most a raise that was not needed yet. Each new connection compares Redis's
run_id with `epoch`: a Redis that restarted since gets `next` moved up to `hw` (a gap, never a
reuse) before the connection sends anything else, and never below the highest id this node saw.
The uploads' counter `dsseq` jumps UPLOAD_GAP ahead then too, and never goes below the highest
upload id the node saw (a Redis that came back empty): a node keeps an upload it loaded attached by
its id, so an id given again would serve the old file's numbers for the new one.

Results saved in a second Redis lost are saved again: a node that sees Redis's run_id change
writes once more the replies it finished in the last RESAVE_S seconds (the first reply wins, so
one that survived is left alone).

Every call has a timeout: a Redis that is down or cut off raises StoreUnavailable within about
a second, and redis-py reconnects by itself when it is back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from store.jobstore import EXPIRED, INVALID, RUNNING, Accepted, StoreUnavailable
from store.uploads import UPLOAD, upload_number

PREFIX = "lestats:"
WINDOW = 100_000
UPLOAD_GAP = 1_000  # far more uploads than one lost second can hold
HEARTBEAT_TTL_MS = 3_000
TIMEOUT_S = 0.5
BULK_TIMEOUT_S = 60.0  # an uploaded CSV may be hundreds of MB
RetentionTuple = tuple[int, int, float | None]

CHECK_COUNTER = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[2])
local epoch = redis.call('GET', KEYS[3])
if epoch and epoch ~= ARGV[1] then
  target = math.max(target, tonumber(redis.call('GET', KEYS[2]) or '0'))
  redis.call('INCRBY', KEYS[4], ARGV[3])
end
if nxt < target then redis.call('SET', KEYS[1], target) end
redis.call('SET', KEYS[3], ARGV[1])
return nxt
"""

NEW_UPLOAD = """
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
"""

ACCEPT = """
local n = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[1], n)
local hw = tonumber(redis.call('GET', KEYS[2]) or '0')
if last + ARGV[3] / 2 > hw then redis.call('SET', KEYS[2], last + ARGV[3]) end
local first = last - n + 1
for i = 0, n - 1 do
  local id = first + i
  redis.call('HSET', KEYS[3], id, 'running')
  redis.call('HSET', KEYS[4], id, ARGV[1])
  redis.call('HSET', KEYS[5], id, ARGV[4 + i])
end
redis.call('SADD', KEYS[6], ARGV[1])
return first
"""

# Shared by FINISH and TRIM: drop the oldest finished jobs beyond the retention.
_TRIM = """
local function trim(now)
  local keep, max_bytes, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  while true do
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if #oldest == 0 then return end
    local too_many = redis.call('ZCARD', KEYS[3]) > keep
      or tonumber(redis.call('GET', KEYS[4]) or '0') > max_bytes
    if not too_many and (ttl <= 0 or tonumber(oldest[2]) >= now - ttl) then return end
    local id = oldest[1]
    local key = ARGV[5] .. 'r:' .. id
    redis.call('DECRBY', KEYS[4], redis.call('STRLEN', key))
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[3], id)
    if tonumber(id) > tonumber(redis.call('GET', KEYS[5]) or '0') then redis.call('SET', KEYS[5], id) end
  end
end
"""

FINISH = (
    _TRIM
    + """
local now = tonumber(ARGV[4])
local saved, added = 0, 0
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  local status = redis.call('HGET', KEYS[1], id)
  if status ~= 'done' and status ~= 'error' then
    redis.call('SET', ARGV[5] .. 'r:' .. id, ARGV[i + 2])
    redis.call('HSET', KEYS[1], id, ARGV[i + 1])
    added = added + string.len(ARGV[i + 2])
    redis.call('ZADD', KEYS[3], now, id)
    local owner = redis.call('HGET', KEYS[2], id)
    if owner then
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', ARGV[5] .. 'run:' .. owner, id)
    end
    saved = saved + 1
  end
end
redis.call('INCRBY', KEYS[4], added)
trim(now)
return saved
"""
)

HEARTBEAT = (
    _TRIM
    + """
redis.call('SET', KEYS[6], '1', 'PX', ARGV[6])
trim(tonumber(ARGV[4]))
return 1
"""
)

LOOKUP = """
local status = redis.call('HGET', KEYS[1], ARGV[1])
if status == 'done' or status == 'error' then
  local reply = redis.call('GET', KEYS[2])
  if reply then return {status, reply} end
end
return {status or '', redis.call('GET', KEYS[3]) or '0'}
"""

CLAIM = """
local me, prefix = ARGV[1], ARGV[3]
redis.call('SET', prefix .. 'alive:' .. me, '1', 'PX', ARGV[4])
local claimed = {}
for _, owner in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local mine = owner == me
  if (mine and ARGV[2] == '1') or (not mine and redis.call('EXISTS', prefix .. 'alive:' .. owner) == 0) then
    local entries = redis.call('HGETALL', prefix .. 'run:' .. owner)
    for i = 1, #entries, 2 do
      redis.call('HSET', prefix .. 'run:' .. me, entries[i], entries[i + 1])
      redis.call('HSET', KEYS[2], entries[i], me)
      table.insert(claimed, entries[i])
      table.insert(claimed, entries[i + 1])
    end
    if not mine then
      redis.call('DEL', prefix .. 'run:' .. owner)
      redis.call('SREM', KEYS[1], owner)
    end
  end
end
return claimed
"""

RESTORE = """
redis.call('SADD', KEYS[3], ARGV[1])
for i = 2, #ARGV, 2 do
  local status = redis.call('HGET', KEYS[1], ARGV[i])
  if status ~= 'done' and status ~= 'error' then
    redis.call('HSET', KEYS[1], ARGV[i], 'running')
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


def key(name: str) -> str:
    return PREFIX + name


def packed_query(kind: str, body: bytes) -> bytes:
    """A running job's query as kept in run:<owner> (claim_orphans unpacks it)."""
    return kind.encode() + b"\n" + body


def without_password(url: str) -> str:
    """The URL to show (health, logs): any user name and password left out."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _options(retry: Retry | AsyncRetry) -> dict[str, Any]:
    """Bounded waits everywhere and no silent retries: a call fails within about a second."""
    return {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S, "retry": retry}


def _retention_args(retention: RetentionTuple) -> list[Any]:
    keep, max_bytes, ttl_s = retention
    return [keep, max_bytes, int(ttl_s * 1000) if ttl_s is not None else 0, int(time.time() * 1000), PREFIX]


RETENTION_KEYS = [key("status"), key("running"), key("done"), key("bytes"), key("expired")]


def _finish_args(retention: RetentionTuple, replies: list[tuple[int, str, bytes]]) -> list[Any]:
    args: list[Any] = _retention_args(retention)
    for job_id, status, reply in replies:
        args += [job_id, status, reply]
    return args


class RedisLedger:
    """What workers (and a front-end's threads) write finished jobs with: one script call per
    batch. Picklable: each process connects on first use. (The event loop uses RedisStore.finish.)"""

    def __init__(self, url: str, retention: RetentionTuple) -> None:
        self._url = url
        self._retention = retention
        self._client: redis.Redis | None = None
        self._finish: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> tuple[str, RetentionTuple]:
        return self._url, self._retention

    def __setstate__(self, state: tuple[str, RetentionTuple]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(self._url, **_options(Retry(NoBackoff(), 0)))
                self._finish = self._client.register_script(FINISH)
            return self._client

    def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """Save replies (the first reply of a job wins); raises if Redis cannot be reached, so
        the batch is kept and sent again (compute/worker.py)."""
        self._redis()
        try:
            self._finish(keys=RETENTION_KEYS, args=_finish_args(self._retention, replies))
        except redis.RedisError as error:
            raise ConnectionError(f"Redis: {error}") from error
        return None

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            self._redis().ping()
        except redis.RedisError as error:
            return {"store": without_password(self._url), "write_error": f"Redis cannot be reached: {error}"}
        return {
            "store": without_password(self._url),
            "write_error": None,
            "ping_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    def issued(self, up_to: int) -> str | None:
        return None

    def expire_below(self, watermark: int) -> str | None:
        return None

    def close(self, next_id: int) -> str | None:
        return None


class RedisStore:
    """The JobStore of `--store redis://...` (store/jobstore.py), on redis-py's asyncio client."""

    def __init__(self, url: str, retention: RetentionTuple) -> None:
        self.description = without_password(url)
        self._retention = retention
        self._highest = 0
        self._run_id: str | None = None
        self._restarted = False
        self._redis = redis.asyncio.Redis.from_url(
            url, redis_connect_func=self._on_connect, **_options(AsyncRetry(NoBackoff(), 0))
        )
        self._accept = self._redis.register_script(ACCEPT)
        self._heartbeat = self._redis.register_script(HEARTBEAT)
        self._lookup = self._redis.register_script(LOOKUP)
        self._claim = self._redis.register_script(CLAIM)
        self._restore = self._redis.register_script(RESTORE)
        self._new_upload = self._redis.register_script(NEW_UPLOAD)
        self._finish = self._redis.register_script(FINISH)
        # The highest upload number this node saw: a Redis that came back empty starts above it.
        self._highest_upload = 0
        # One retry: its connections sit idle between uploads, and after an outage the first use of
        # each finds it broken.
        bulk = {**_options(AsyncRetry(NoBackoff(), 1)), "socket_timeout": BULK_TIMEOUT_S}
        self._bulk = redis.asyncio.Redis.from_url(url, **bulk)

    async def _on_connect(self, connection: AsyncConnection) -> None:
        """Before a new connection sends anything: move the id counter past what a restarted
        Redis may have lost (see the module's docstring)."""
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        text = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("run_id:"))
        keys = [key("next"), key("hw"), key("epoch"), key("dsseq")]
        await connection.send_command("EVAL", CHECK_COUNTER, len(keys), *keys, run_id, self._highest, UPLOAD_GAP)
        await connection.read_response()
        if self._run_id is not None and run_id != self._run_id:
            self._restarted = True
            # The pool's idle connections were opened to the Redis that is gone: each would fail
            # its next call once ("Connection closed by server"), after health already says "ok".
            await self._drop_idle_connections()
        self._run_id = run_id

    def restarted(self) -> bool:
        """Whether Redis restarted since the last call (it may have lost its last second)."""
        restarted, self._restarted = self._restarted, False
        return restarted

    async def _command(self, call: Callable[[], Awaitable[Any]], read: bool = False) -> Any:
        """Every call to Redis: its errors become StoreUnavailable. A connection error (above all
        a connection closed under the call: Redis restarted since the pool opened it) drops the
        main pool's idle connections, which would each fail the same way once; a `read` is then
        sent again, once, on a fresh one: reading twice is harmless. A script is not sent twice:
        it may have run (a job accepted or claimed so is found by the owner's next look for its
        own jobs, server/shared.py)."""
        try:
            return await call()
        except redis.ConnectionError as error:
            await self._drop_idle_connections()
            if not read:
                raise StoreUnavailable(f"Redis: {error}") from error
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(f"Redis: {error}") from error
        return await self._command(call)  # the read's second and last try

    async def _drop_idle_connections(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):  # closing a dead socket may fail too
            await self._redis.connection_pool.disconnect(inuse_connections=False)

    async def _call(self, script: Any, keys: list[str], args: list[Any], read: bool = False) -> Any:
        return await self._command(lambda: script(keys=keys, args=args), read)

    async def accept(
        self, owner: str, jobs: Sequence[tuple[str, bytes]], ask: Sequence[int] = ()
    ) -> tuple[int, dict[int, bytes]]:
        """(Redis keeps no answers by query: `ask` gets none.)"""
        keys = [key("next"), key("hw"), key("status"), key("running"), key(f"run:{owner}"), key("owners")]
        queries = [packed_query(kind, body) for kind, body in jobs]
        first = int(await self._call(self._accept, keys, [owner, len(jobs), WINDOW, *queries]))
        self._highest = max(self._highest, first + len(jobs) - 1)
        return first, {}

    async def finish(self, replies: list[tuple[int, str, bytes]]) -> str | None:
        """RedisLedger.finish from the event loop: the replies cached answers give, saved without
        a thread hop; raises StoreUnavailable (server/answers.py then sends them through the pool)."""
        await self._call(self._finish, RETENTION_KEYS, _finish_args(self._retention, replies))
        return None

    async def restore(self, owner: str, jobs: Sequence[Accepted]) -> None:
        keys = [key("status"), key("running"), key("owners"), key(f"run:{owner}")]
        args: list[Any] = [owner]
        for job_id, kind, body in jobs:
            args += [job_id, packed_query(kind, body)]
        await self._call(self._restore, keys, args)

    async def lookup(self, job_id: int) -> tuple[int, bytes]:
        keys = [key("status"), key(f"r:{job_id}"), key("expired")]
        status, second = await self._call(self._lookup, keys, [job_id], read=True)
        if status in (b"done", b"error"):
            return 200, bytes(second)
        if status == b"running":
            return 200, RUNNING
        if 0 < job_id <= int(second):
            return 404, EXPIRED
        return 404, INVALID

    async def statuses(self) -> list[tuple[int, str]]:
        listed = await self._command(lambda: self._redis.hgetall(key("status")), read=True)
        return sorted(
            (int(job_id), status.decode() if isinstance(status, bytes) else status) for job_id, status in listed.items()
        )

    async def running(self, owners: Sequence[str] | None = None) -> int:
        async def count() -> int:
            if owners is None:
                return int(await self._redis.hlen(key("running")))
            async with self._redis.pipeline(transaction=False) as pipe:
                for owner in owners:
                    pipe.hlen(key(f"run:{owner}"))
                return sum(int(count) for count in await pipe.execute())

        return int(await self._command(count, read=True))

    async def heartbeat(self, owner: str) -> None:
        """The heartbeat, and the retention's time to live applied while no job finishes."""
        args = [*_retention_args(self._retention), HEARTBEAT_TTL_MS]
        await self._call(self._heartbeat, [*RETENTION_KEYS, key(f"alive:{owner}")], args)

    async def claim_orphans(self, owner: str, including_own: bool) -> list[Accepted]:
        args = [owner, "1" if including_own else "0", PREFIX, HEARTBEAT_TTL_MS]
        flat = await self._call(self._claim, [key("owners"), key("running")], args)
        claimed = []
        for job_id, query in zip(flat[::2], flat[1::2], strict=True):
            kind, _, body = bytes(query).partition(b"\n")
            claimed.append(Accepted(int(job_id), kind.decode(), body))
        return claimed

    async def new_dataset_name(self) -> str:
        number = int(await self._call(self._new_upload, [key("dsseq")], [self._highest_upload]))
        self._highest_upload = max(self._highest_upload, number)
        return f"{UPLOAD}{number}"

    async def keep_dataset(self, name: str, label: str, content: bytes) -> None:
        await self._command(lambda: self._bulk.set(key(f"ds:{name}"), content))
        await self._command(lambda: self._redis.hset(key("datasets"), name, label))

    async def datasets(self) -> dict[str, str]:
        listed = await self._command(lambda: self._redis.hgetall(key("datasets")), read=True)
        datasets = {bytes(name).decode(): bytes(label).decode() for name, label in listed.items()}
        self._highest_upload = max([self._highest_upload, *map(upload_number, datasets)])
        return datasets

    async def dataset_content(self, name: str) -> bytes:
        content = await self._command(lambda: self._bulk.get(key(f"ds:{name}")))
        if content is None:
            raise StoreUnavailable(f"the data set {name!r} is listed but its file is missing in Redis")
        return bytes(content)

    async def remove_dataset(self, name: str) -> None:
        """The list and the file in one transaction: never one gone without the other."""

        async def remove() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(key("datasets"), name)
                pipe.unlink(key(f"ds:{name}"))
                await pipe.execute()

        await self._command(remove)

    async def health(self) -> dict[str, Any]:
        return {"store": self.description}

    async def close(self) -> None:
        await self._redis.aclose()
        await self._bulk.aclose()
