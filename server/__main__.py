"""`python -m server`: serve until SIGTERM or SIGINT, then drain, persist, release and exit 0."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _leave(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


# Until the server serves (imports alone take a few tenths of a second), a SIGTERM or SIGINT just
# ends the process with status 0: nothing has started, so nothing is left to drain or release.
# Once it serves, server/stopping.py drains first.
signal.signal(signal.SIGTERM, _leave)
signal.signal(signal.SIGINT, _leave)

import socket  # noqa: E402
from functools import partial  # noqa: E402

from aiohttp import web  # noqa: E402

from server.app import create_app  # noqa: E402
from server.config import parse_args  # noqa: E402
from server.eventloop import new_event_loop  # noqa: E402
from server.stopping import drain_on_signals  # noqa: E402
from store.csvfile import DataFileError  # noqa: E402
from store.statedir import lock_state_dir  # noqa: E402


def cannot_listen(host: str, port: int) -> str | None:
    """Why the port cannot be listened on, found before the data is loaded and workers started."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as error:
        return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    failure = cannot_listen(config.host, config.port) or lock_state_dir(config.state_dir)
    if failure:
        print(f"cannot start: {failure}", file=sys.stderr)
        return 2
    if config.frontends > 1:
        from server.frontends import Node

        return Node(config).run()
    loop = new_event_loop(config.loop)
    app = create_app(config)
    app.on_startup.append(drain_on_signals)
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            access_log=None,
            print=partial(print, flush=True),
            loop=loop,
        )
    except (DataFileError, OSError) as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
