"""uvicorn's sans-I/O WebSocket protocol, minus what an open connection does not need (issue 15).

Measured per idle agent socket (benchmarks/agents.py): uvicorn keeps the upgrade request and its 101
response, each with its headers, for the connection's whole life, and an asyncio.Queue plus an
asyncio.Event (five deques of 624 bytes between them, mostly empty). Here the handshake objects are dropped
once the 101 is sent (and the scope cut to its type, path and client: the agent socket reads its token
before accepting), and the queue and event are replaced by a list and a flag that make a future only while
someone waits.
`echocenter serve` passes this class as uvicorn's ``ws`` (README "Many agents on one instance").
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _Mailbox:
    """The receive queue (one consumer: the ASGI task's ``receive``), as uvicorn's protocol uses it."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Gate:
    """The writable flag (set, clear, wait), with futures only while a sender waits on a full buffer."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> None:
        if self._open:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


_SCOPE_KEPT = frozenset({"type", "path", "client", "app"})


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Mailbox()  # type: ignore[assignment]
        self.writable = _Gate()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            self.request = self.response = None  # type: ignore[assignment]
            # uvicorn reads the scope only up to the handshake (its access log); the app has read it too.
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            for key in tuple(scope):
                if key not in _SCOPE_KEPT:
                    del scope[key]
            scope["headers"] = []
