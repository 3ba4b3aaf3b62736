"""`python -m server`: serve until SIGTERM or SIGINT, then drain, persist, release and exit 0."""

from __future__ import annotations

import sys
from functools import partial

from aiohttp import web

from server.app import create_app
from server.config import parse_args
from server.eventloop import new_event_loop
from store.csvfile import DataFileError


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if config.frontends > 1:
        from server.frontends import Node

        return Node(config).run()
    loop = new_event_loop(config.loop)
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
