"""The command line of `python -m server` (API.md, "Command line") as a typed configuration."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from store.ledger import FSYNC_MODES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
LOOPS = ("uvloop", "asyncio")


@dataclass(frozen=True)
class Config:
    data: Path = BUNDLED_SAMPLE
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    state_dir: Path = Path("results")
    log_file: Path | None = None
    max_body: int = 1 * 2**20
    max_queued: int = 10_000
    keep_results: int = 100_000
    keep_mb: int = 512
    results_ttl_s: float | None = None
    admin_token: str | None = None
    poll_grace_ms: float = 10.0
    max_upload: int = 256 * 2**20
    cache_entries: int = 4096
    cache_mb: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    fsync: str = "batch"
    cache_gather_ms: float = 2.0
    loop: str = "uvloop"
    http_fast_path: bool = True
    frontends: int = 1
    store: str | None = None
    node: str | None = None

    @property
    def log_path(self) -> Path:
        return self.log_file or self.state_dir / "webserver.log"

    @property
    def node_name(self) -> str:
        return self.node or f"{self.host}:{self.port}"

    @property
    def shared(self) -> bool:
        """Jobs live in a store shared with other processes (several front-ends, or Redis)."""
        return self.frontends > 1 or self.store is not None


def default_workers() -> int:
    """$TP_NUM_OF_THREADS (the original's variable), else the number of CPUs."""
    configured = os.environ.get("TP_NUM_OF_THREADS", "").strip()
    if configured:
        return positive_int(configured)
    return os.cpu_count() or 1


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return number


def frontends_count(text: str) -> int:
    """A number, or `auto`: one front-end per two CPUs (the workers and the kernel need the rest)."""
    if text == "auto":
        return max(1, (os.cpu_count() or 1) // 2)
    return positive_int(text)


def store_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected redis://HOST:PORT/DB (or rediss://, unix://)")
    return text


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m server", description="Le Stats Sportif: CDC nutrition and activity statistics over HTTP."
    )
    parser.add_argument(
        "--data", type=Path, default=BUNDLED_SAMPLE, help="CSV in the CDC schema (default: the bundled sample)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="pool processes (default $TP_NUM_OF_THREADS, else the CPU count)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("results"),
        help="where results, job states and logs persist (default ./results)",
    )
    parser.add_argument("--log-file", type=Path, default=None, help="log file (default STATE_DIR/webserver.log)")
    parser.add_argument(
        "--max-body", type=positive_int, default=2**20, help="largest request body in bytes (default 1 MiB)"
    )
    parser.add_argument(
        "--max-queued",
        type=positive_int,
        default=10_000,
        help="jobs queued or running at once; beyond it a query gets 503 (default 10000)",
    )
    parser.add_argument(
        "--keep-results", type=positive_int, default=100_000, help="finished jobs kept, newest first (default 100000)"
    )
    parser.add_argument(
        "--keep-mb", type=positive_int, default=512, help="and at most this many MiB of them (default 512)"
    )
    parser.add_argument(
        "--results-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also drop finished jobs older than this (default: keep)",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("LESTATS_ADMIN_TOKEN") or None,
        help=(
            "require 'Authorization: Bearer TOKEN' on admin routes"
            " (default $LESTATS_ADMIN_TOKEN; without one, admin routes are loopback-only)"
        ),
    )
    parser.add_argument(
        "--poll-grace-ms",
        type=float,
        default=10.0,
        help=(
            "get_results on a running job answers when it finishes, or after this many ms"
            " (default 10; 0 answers at once)"
        ),
    )
    parser.add_argument(
        "--max-upload",
        type=positive_int,
        default=256 * 2**20,
        help="largest data-set upload in bytes (default 256 MiB)",
    )
    parser.add_argument(
        "--cache-entries",
        type=int,
        default=4096,
        help="replies kept to answer identical queries without the pool (default 4096; 0 turns the cache off)",
    )
    parser.add_argument(
        "--cache-mb", type=positive_int, default=64, help="memory bound of that cache in MiB (default 64)"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request's headers must arrive within this, else 408 (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request body must keep coming at 1 KiB/s over each such interval, else 408 (default 10)",
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_MODES,
        default="batch",
        help=(
            "when a job is reported done: always (its journal write is on disk, one fdatasync per write),"
            " batch (on disk, one fdatasync shared by the writes that arrive together; the default),"
            " off (in the kernel's cache: survives the server being killed, not a power cut)"
        ),
    )
    parser.add_argument(
        "--cache-gather-ms",
        type=float,
        default=2.0,
        help=(
            "under load, cached answers wait up to this many ms to be journalled together, one ledger"
            " call for more of them (default 2; 0 journals them at once)"
        ),
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="uvloop",
        help="event loop: uvloop (default; less CPU per request) or the standard asyncio loop",
    )
    parser.add_argument(
        "--http-fast-path",
        choices=("on", "off"),
        default="on",
        help="answer whole, plain POST /api/<query> and get_results requests below aiohttp's web layer"
        " (default on; about half the CPU per job); off: every request through aiohttp",
    )
    parser.add_argument(
        "--frontends",
        type=frontends_count,
        default=1,
        help="HTTP front-end processes sharing the port (SO_REUSEPORT); 'auto': one per two CPUs (default 1)",
    )
    parser.add_argument(
        "--store",
        type=store_url,
        default=None,
        metavar="URL",
        help="keep job ids, states and results in Redis (redis://HOST:PORT/DB) to serve as one of several nodes"
        " (default: the embedded store, in --state-dir)",
    )
    parser.add_argument("--node", default=None, help="this node's name in /api/health and the log (default HOST:PORT)")
    args = parser.parse_args(argv)
    if args.cache_entries < 0:
        parser.error("--cache-entries must be 0 or more")
    if not 0 <= args.cache_gather_ms <= 100:
        parser.error("--cache-gather-ms must be between 0 and 100")
    if not 0 <= args.poll_grace_ms <= 1000:
        parser.error("--poll-grace-ms must be between 0 and 1000")
    if not (0 < args.header_timeout <= 3600 and 0 < args.body_timeout <= 3600):
        parser.error("--header-timeout and --body-timeout must be between 0 and 3600 seconds")
    if args.results_ttl is not None and args.results_ttl <= 0:
        parser.error("--results-ttl must be a positive number of seconds")
    try:
        workers = args.workers or default_workers()
    except argparse.ArgumentTypeError as error:
        parser.error(f"TP_NUM_OF_THREADS: {error}")
    return Config(
        data=args.data,
        host=args.host,
        port=args.port,
        workers=workers,
        state_dir=args.state_dir,
        log_file=args.log_file,
        max_body=args.max_body,
        max_queued=args.max_queued,
        keep_results=args.keep_results,
        keep_mb=args.keep_mb,
        results_ttl_s=args.results_ttl,
        admin_token=args.admin_token,
        poll_grace_ms=args.poll_grace_ms,
        max_upload=args.max_upload,
        cache_entries=args.cache_entries,
        cache_mb=args.cache_mb,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        fsync=args.fsync,
        cache_gather_ms=args.cache_gather_ms,
        loop=args.loop,
        http_fast_path=args.http_fast_path == "on",
        frontends=args.frontends,
        store=args.store,
        node=args.node,
    )
