"""uvicorn's sans-I/O WebSocket protocol, minus what an open connection does not need (issue 15).

Measured per idle agent socket (benchmarks/agents.py): uvicorn keeps the upgrade request and its 101
response, each with its headers, for the connection's whole life, an asyncio.Queue plus an asyncio.Event
(five deques of 624 bytes between them, mostly empty), two coroutine frames for every waiting ``receive``,
and two timers per keepalive ping (the answered ping's deadline stays in the loop's heap, cancelled, until
it falls due). Here the handshake objects are dropped once the 101 is sent (and the scope cut to its type,
path and client: the agent socket reads its token before accepting), the queue and event are replaced by a
list and a flag, ``receive`` hands out a plain future, and one timer per connection both sends the ping and
judges the previous one.
`echocenter serve` passes this class as uvicorn's ``ws`` (README "Many agents on one instance").
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _Mailbox:
    """The receive queue (one consumer: the ASGI task's ``receive``), as uvicorn's protocol uses it.

    ``get`` is a plain function returning a future, so a task waiting for its next frame holds no coroutine
    frame of ours; ``on_taken`` runs (soon) after a waiting consumer was handed a message."""

    __slots__ = ("_items", "_waiter", "on_taken")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[Any] | None = None
        self.on_taken: Any = None

    def put_nowait(self, item: Any) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(item)
            if self.on_taken is not None:
                waiter.get_loop().call_soon(self.on_taken)
        else:
            self._items.append(item)

    def empty(self) -> bool:
        return not self._items

    def get(self) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self._items:
            future.set_result(self._items.pop(0))
        else:
            self._waiter = future
        return future


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
        mailbox = _Mailbox()
        mailbox.on_taken = self._resume_if_drained
        self.queue = mailbox  # type: ignore[assignment]
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

    def receive(self) -> asyncio.Future[Any]:  # type: ignore[override]
        """uvicorn's receive without its coroutine: reading resumes once the queue is drained (here, or
        via ``on_taken`` when a waiting consumer was handed the message)."""
        future = cast(_Mailbox, self.queue).get()
        self._resume_if_drained()
        return future

    def _resume_if_drained(self) -> None:
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()

    # Keepalive with one timer: each tick judges the previous ping, then sends the next one.

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_keepalive_ping)

    def send_keepalive_ping(self) -> None:
        assert self.ping_interval is not None
        self.ping_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        if self.pending_ping_payload is not None and self.ping_timeout is not None:
            left = self.ping_sent_at + self.ping_timeout - self.loop.time()
            if left <= 0:
                self.keepalive_timeout()
                return
            self.ping_timer = self.loop.call_later(left, self.send_keepalive_ping)
            return
        self.pending_ping_payload = struct.pack("!I", random.getrandbits(32))
        self.ping_sent_at = self.loop.time()
        self.conn.send_ping(self.pending_ping_payload)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.ping_timer = self.loop.call_later(self.ping_interval, self.send_keepalive_ping)

    def handle_pong(self, event: Any) -> None:
        if self.pending_ping_payload is not None and bytes(event.data) == self.pending_ping_payload:
            self.last_ping_rtt = self.loop.time() - self.ping_sent_at
            self.pending_ping_payload = None
