"""Running one command's coroutine, tuned for moving large blobs.

- uvloop when it is installed (it is, with uvicorn[standard]): cheaper socket reads and callbacks.
- httpcore reads a response body 64 KiB at a time, each read a trip through anyio and the event
  loop; 1 MiB reads return whatever the socket holds (usually 256 KiB or more), so a 250 MB pull
  makes four to sixteen times fewer trips. This changes a class attribute of httpcore's, so it is
  done here, for the `pyreg` process only, and never by importing the library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
READ_SIZE = 1 << 20


def _tune_httpcore() -> None:
    try:
        from httpcore._async.http11 import AsyncHTTP11Connection
    except ImportError:  # another httpcore layout: keep its defaults
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", READ_SIZE) < READ_SIZE:
        AsyncHTTP11Connection.READ_NUM_BYTES = READ_SIZE


def run(coro: Coroutine[Any, Any, T]) -> T:
    _tune_httpcore()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
