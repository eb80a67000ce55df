"""Run an ASGI app on a real TCP port inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


def _listening_socket(attempts: int = 5) -> socket.socket:
    """A socket already listening on a free port. With SO_REUSEADDR, bind(0) can pick a port that a busy
    machine's other sockets still hold, and then listen() fails (EADDRINUSE): take another port then."""
    for attempt in range(attempts):
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets it can tell are TCP, and
        # without that every keep-alive request waited ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(2048)
            return sock
        except OSError:
            sock.close()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def serve(app: ASGIApp, *, lifespan: str = "on", **options: Any) -> AsyncIterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while the app is being served (``options``: uvicorn's)."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    options = {"ws_ping_interval": None, **options}
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # surfaces the start-up error
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
