"""Our asyncio long-connection client: it moves bytes and sleeps; the rules live in ``protocol.Connection``.

One handler, ``on_payload``, gets each whole event payload (bytes) in a task of its own, so the receive loop
never waits and a card click is never queued behind a message. What the handler returns rides in the ack
(a card callback's answer; None for a plain ``{"code": 200}``). A message's handler stores the event (the
durable claim) and leaves the work for later; if it raises, no ack is sent, so Feishu pushes the event again.
The card deadline is the handler's business (``feishu/card_answer.py``), the same for both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from echocenter import metrics
from echocenter.feishu.longconn.protocol import (
    Connection,
    ConnState,
    Delivery,
    LongConnError,
    StateChange,
    handshake_refused,
)
from echocenter.taskset import TaskSet

__all__ = ["LongConnClient", "PayloadHandler", "StateChange", "StateHandler"]

log = logging.getLogger(__name__)

ENDPOINT_PATH = "/callback/ws/endpoint"

PayloadHandler = Callable[[bytes], Awaitable[dict[str, Any] | None]]
StateHandler = Callable[[StateChange], Awaitable[None]]


class LongConnClient:
    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str,
        http: httpx.AsyncClient,
        on_payload: PayloadHandler,
        on_state: StateHandler,
        discovery_timeout: float = 10.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self._app_id = app_id
        self._app_secret = app_secret
        self._base_url = base_url.rstrip("/")
        self._http = http
        self._on_payload = on_payload
        self._on_state = on_state
        self._discovery_timeout = discovery_timeout
        self._conn = Connection(backoff_cap=backoff_cap)
        self._tasks = TaskSet("longconn")
        self._send_lock = asyncio.Lock()

    @property
    def state(self) -> ConnState:
        return self._conn.state

    # --- the one reconnect loop ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and stay connected until cancelled. Never gives up; every failure is reported, judged by
        ``protocol.classify_error`` and followed by the wait the connection decides."""
        try:
            while True:
                await self._report(self._conn.connecting(time.monotonic()))
                error: Exception | None = None
                try:
                    await self._session(await self._discover())
                except Exception as exc:  # judged, not swallowed: it is reported with the next state
                    error = exc
                change, delay = self._conn.closed(error, time.monotonic())
                await self._report(change)
                await asyncio.sleep(delay)
        finally:
            await self._tasks.stop()

    async def _report(self, change: StateChange) -> None:
        try:
            await self._on_state(change)
        except Exception:
            log.exception("longconn_state_handler_failed")

    async def _discover(self) -> str:
        try:
            response = await self._http.post(
                self._base_url + ENDPOINT_PATH,
                json={"AppID": self._app_id, "AppSecret": self._app_secret},
                headers={"locale": "zh"},
                timeout=self._discovery_timeout,
            )
        except httpx.TimeoutException as exc:
            raise LongConnError(f"discovery timed out after {self._discovery_timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise LongConnError(f"discovery failed: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise LongConnError(f"discovery answered HTTP {response.status_code} without JSON") from exc
        return self._conn.discovered(response.status_code, body)

    # --- one connection -----------------------------------------------------------------------------
    async def _session(self, url: str) -> None:
        try:
            # No permessage-deflate: frames are small protobuf, and compressing every ack costs more CPU
            # than it saves bytes.
            ws = await connect(
                url,
                ping_interval=20,
                ping_timeout=20,
                max_size=None,
                proxy=None,
                open_timeout=10,
                compression=None,
            )
        except InvalidStatus as exc:
            headers = {k.lower(): v for k, v in exc.response.headers.raw_items()}
            raise handshake_refused(exc.response.status_code, headers) from exc
        async with ws:
            change, first_ping = self._conn.opened(url, time.monotonic())
            await self._report(change)
            with contextlib.suppress(ConnectionClosed):
                await self._send(ws, first_ping)
            await self._receive_loop(ws)

    async def _receive_loop(self, ws: ClientConnection) -> None:
        conn = self._conn
        while True:
            ping = conn.tick(time.monotonic())  # raises ConnectionDead when the link went silent
            if ping is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._send(ws, ping)
            try:
                async with asyncio.timeout(conn.wake_in(time.monotonic())):
                    data = await ws.recv()
            except TimeoutError:
                continue  # the clock's turn: a ping, or the watchdog
            except ConnectionClosed:
                return
            delivery = conn.receive(data, time.monotonic())
            if delivery is not None:
                self._tasks.spawn(self._answer(ws, delivery))

    async def _answer(self, ws: ClientConnection, delivery: Delivery) -> None:
        try:
            result = await self._on_payload(delivery.payload)
        except Exception:
            log.exception("longconn_event_not_stored")  # not acked: Feishu delivers it again
            return
        now = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            await self._send(ws, self._conn.ack(delivery, now, data=result))
        metrics.event_acked(now - delivery.received)

    async def _send(self, ws: ClientConnection, data: bytes) -> None:
        async with self._send_lock:
            await ws.send(data)
