"""The event loop a server process runs on: uvloop by default, the standard one with --loop asyncio."""

from __future__ import annotations

import asyncio

import uvloop


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop costs less CPU per request (bench/README.md); asyncio's loop needs no extra package."""
    return uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
