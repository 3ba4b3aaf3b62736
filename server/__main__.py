"""`python -m server`: serve until SIGTERM or SIGINT, then drain, persist, release and exit 0."""

from __future__ import annotations

import asyncio
import sys
from functools import partial

import uvloop
from aiohttp import web

from server.app import create_app
from server.config import parse_args
from store.csvfile import DataFileError


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    loop = uvloop.new_event_loop() if config.loop == "uvloop" else asyncio.new_event_loop()
    try:
        web.run_app(
            create_app(config),
            host=config.host,
            port=config.port,
            access_log=None,
            print=partial(print, flush=True),
            loop=loop,
        )
    except DataFileError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
