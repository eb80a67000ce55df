"""The lean agent-socket protocol (lean_websocket.py): its receive queue and writable flag, and keepalive
with one timer per connection, over a real socket served by uvicorn."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send

from echocenter.lean_websocket import LeanWebSocketProtocol, _Gate, _Mailbox
from tests.support.live import serve

PING, PONG, CLOSE = 0x9, 0xA, 0x8
KEEPALIVE = 0.3  # seconds, both the ping interval and the pong deadline


async def test_the_mailbox_hands_over_in_order_and_waits_when_empty() -> None:
    box = _Mailbox()
    box.put_nowait(1)
    box.put_nowait(2)
    assert not box.empty()
    assert [await box.get(), await box.get()] == [1, 2] and box.empty()
    waiting = asyncio.ensure_future(box.get())
    done, _ = await asyncio.wait([waiting], timeout=0.02)
    assert not done  # empty: it waits
    box.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3


async def test_a_message_handed_to_a_waiting_reader_is_reported_taken() -> None:
    box = _Mailbox()
    taken = asyncio.Event()
    box.on_taken = taken.set  # the protocol resumes reading the socket here
    waiting = box.get()
    box.put_nowait("frame")
    await asyncio.wait_for(taken.wait(), 1)
    assert waiting.result() == "frame" and box.empty()


async def test_the_gate_holds_senders_while_cleared_and_lets_all_through_when_set() -> None:
    gate = _Gate()
    await asyncio.wait_for(gate.wait(), 1)  # open: no wait
    gate.clear()
    assert not gate.is_set()
    senders = [asyncio.ensure_future(gate.wait()) for _ in range(3)]
    done, _ = await asyncio.wait(senders, timeout=0.02)
    assert not done  # cleared: they are held
    gate.set()
    await asyncio.wait_for(asyncio.gather(*senders), 1)
    assert gate.is_set()


async def _held_open(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts a WebSocket and reads it until it closes."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        pass


class _RawClient:
    """A WebSocket client at the byte level, so the test decides whether a ping gets its pong."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def frame(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(2), 10)
        return head[0] & 0x0F, await self.reader.readexactly(head[1] & 0x7F)  # server frames: short, unmasked

    def pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | PONG, 0x80 | len(payload)]) + mask + masked)


@asynccontextmanager
async def _connected() -> AsyncIterator[_RawClient]:
    options = {"ws": LeanWebSocketProtocol, "ws_ping_interval": KEEPALIVE, "ws_ping_timeout": KEEPALIVE}
    async with serve(_held_open, lifespan="off", **options) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        try:
            yield _RawClient(reader, writer)
        finally:
            writer.close()


async def test_answered_keepalive_pings_keep_coming_each_with_its_own_payload() -> None:
    async with _connected() as client:
        payloads = []
        for _ in range(4):  # each ping after the first shows the connection outlived the previous deadline
            opcode, payload = await client.frame()
            assert opcode == PING
            payloads.append(payload)
            client.pong(payload)
        assert len(set(payloads)) == 4


async def test_an_unanswered_keepalive_ping_closes_the_socket_with_1011() -> None:
    async with _connected() as client:
        opcode, _ = await client.frame()
        assert opcode == PING  # not answered
        opcode, payload = await client.frame()
        assert opcode == CLOSE
        assert struct.unpack("!H", payload[:2])[0] == 1011
        assert payload[2:] == b"keepalive ping timeout"
