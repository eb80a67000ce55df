"""The emulator in-process on a real port, and a minimal raw long-connection peer built on our frame codec."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from echocenter.emulator import Emulator, EmulatorConfig
from echocenter.emulator.state import World
from echocenter.feishu.longconn.frames import Frame, FrameMethod, ack_payload, decode, encode
from tests.support.live import serve

APP_ID = World.DEFAULT_APP_ID
APP_SECRET = World.DEFAULT_APP_SECRET


@dataclass
class RunningEmulator:
    emulator: Emulator
    url: str
    http: httpx.AsyncClient

    @property
    def world(self) -> World:
        return self.emulator.world

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, f"/control{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def token(self, app_id: str = APP_ID, app_secret: str = APP_SECRET) -> str:
        body = (
            await self.http.post(
                "/open-apis/auth/v3/tenant_access_token/internal",
                json={"app_id": app_id, "app_secret": app_secret},
            )
        ).json()
        token: str = body["tenant_access_token"]
        return token

    async def bot_sends_card(self, card: dict[str, Any], chat_id: str = "oc_ops") -> str:
        """The default app's bot posts ``card`` to a chat, through the Open API; returns its message_id."""
        response = await self.http.post(
            "/open-apis/im/v1/messages",
            params={"receive_id_type": "chat_id"},
            headers={"Authorization": f"Bearer {await self.token()}"},
            json={"receive_id": chat_id, "msg_type": "interactive", "content": json.dumps(card)},
        )
        message_id: str = response.json()["data"]["message_id"]
        return message_id


@asynccontextmanager
async def running_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[RunningEmulator]:
    emulator = Emulator(config)
    async with serve(emulator.asgi()) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield RunningEmulator(emulator, url, http)


@dataclass
class RawPeer:
    """A bare long-connection client: discovery, connect, then frames in and out as the test says."""

    ws: ClientConnection
    service_id: int
    device_id: str
    received: asyncio.Queue[Frame] = field(default_factory=asyncio.Queue)

    async def next_frame(self, timeout: float = 5) -> Frame:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def send(self, frame: Frame) -> None:
        await self.ws.send(encode(frame))

    async def ping(self) -> None:
        await self.send(
            Frame(service=self.service_id, method=FrameMethod.CONTROL, headers=[("type", "ping")])
        )

    async def ack(self, frame: Frame, data: Any = None, code: int = 200) -> None:
        await self.send(
            Frame(
                seq_id=frame.seq_id,
                log_id=frame.log_id,
                service=frame.service,
                method=frame.method,
                headers=[*frame.headers, ("biz_rt", "1")],
                payload=ack_payload(code, data),
            )
        )

    async def next_event(self, timeout: float = 5) -> tuple[Frame, dict[str, Any]]:
        """The next whole event (parts joined), with its last frame (the one to ack)."""
        parts: dict[int, bytes] = {}
        while True:
            frame = await self.next_frame(timeout)
            if frame.method != FrameMethod.DATA:
                continue
            total, seq = int(frame.header("sum") or 1), int(frame.header("seq") or 0)
            parts[seq] = frame.payload
            if len(parts) == total:
                return frame, json.loads(b"".join(parts[i] for i in range(total)))


async def discover(
    http: httpx.AsyncClient, app_id: str = APP_ID, app_secret: str = APP_SECRET
) -> dict[str, Any]:
    response = await http.post("/callback/ws/endpoint", json={"AppID": app_id, "AppSecret": app_secret})
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def raw_peer(
    http: httpx.AsyncClient, app_id: str = APP_ID, app_secret: str = APP_SECRET
) -> AsyncIterator[RawPeer]:
    body = await discover(http, app_id, app_secret)
    assert body["code"] == 0, body
    url = body["data"]["URL"]
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(url).query)
    async with connect(url, ping_interval=None) as ws:
        peer = RawPeer(ws, int(query["service_id"][0]), query["device_id"][0])

        async def pump() -> None:
            async for data in ws:
                assert isinstance(data, bytes)
                peer.received.put_nowait(decode(data))

        task = asyncio.create_task(pump())
        try:
            yield peer
        finally:
            task.cancel()
