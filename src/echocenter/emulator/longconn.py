"""The server side of Feishu's long connection: discovery, handshake, ping/pong, pushes, acks, redelivery.

Feishu's rules, kept here: at most 50 connections per app; each event goes to exactly one connection chosen
at random (no broadcast); an event not acked within 3 s is pushed again, maybe on another connection;
large payloads travel in parts (``sum``/``seq`` headers sharing a ``message_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from echocenter.emulator.state import App, World
from echocenter.emulator.webhook import webhook_request
from echocenter.feishu.longconn.frames import (
    AckPayload,
    Frame,
    FrameError,
    FrameMethod,
    FrameType,
    decode,
    encode,
    parse_ack_payload,
)

log = logging.getLogger(__name__)

# Discovery answer codes (shared/feishu/PROTOCOL.md).
SYSTEM_BUSY = 1
NO_CREDENTIAL = 1000040344
LONG_CONNECTION_OFF = 400  # the emulator's choice: Feishu's code for this case is unconfirmed
AUTH_FAILED = 514
EXCEED_CONN_LIMIT = 1000040350
TICKET_TTL_SECONDS = 300


@dataclass(eq=False)
class Connection:
    websocket: WebSocket
    app_id: str
    device_id: str
    service_id: int
    connected_at: float = field(default_factory=time.time)
    pings: int = 0
    frames_sent: int = 0
    acks: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: Frame) -> None:
        async with self.send_lock:
            await self.websocket.send_bytes(encode(frame))
            self.frames_sent += 1

    def public(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "device_id": self.device_id,
            "service_id": self.service_id,
            "connected_at": self.connected_at,
            "pings": self.pings,
            "frames_sent": self.frames_sent,
            "acks": self.acks,
        }


@dataclass(eq=False)
class Delivery:
    """One event on its way to the app, over as many attempts as it takes to be acked."""

    app_id: str
    event_id: str
    event_type: str
    payload: bytes
    attempts: list[dict[str, Any]] = field(default_factory=list)  # device_id, frame message_id, at
    ack: AckPayload | None = None
    ack_device_id: str | None = None
    ack_biz_rt: str | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    acked_at: float | None = None  # time.perf_counter() when the ack was taken in
    last_sent_at: float | None = None  # time.perf_counter() when the last attempt's frames were sent
    gave_up: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "attempts": self.attempts,
            "acked": self.acked.is_set(),
            "ack_code": self.ack.code if self.ack else None,
            "ack_data": self.ack.data if self.ack else None,
            "ack_device_id": self.ack_device_id,
            "biz_rt": self.ack_biz_rt,
            "gave_up": self.gave_up,
            # frame sent → ack received, for the last attempt (benchmarks)
            "ack_ms": (self.acked_at - self.last_sent_at) * 1000
            if self.acked_at is not None and self.last_sent_at is not None
            else None,
        }


class LongConnHub:
    def __init__(self, world: World) -> None:
        self.world = world
        self.connections: dict[str, list[Connection]] = {}
        self.deliveries: dict[str, Delivery] = {}  # by event_id
        self._by_frame_message_id: dict[str, Delivery] = {}
        self._tickets: dict[str, tuple[str, float]] = {}  # ticket -> (app_id, expires_at)
        self._connection_arrived = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0

    # --- discovery ----------------------------------------------------------------------------------
    async def discover(self, request: Request) -> Response:
        self.world.counters["callback/ws/endpoint"] += 1
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        faults = self.world.faults
        if faults.discovery_busy > 0:
            faults.discovery_busy -= 1
            return JSONResponse({"code": SYSTEM_BUSY, "msg": "system busy", "data": None})
        app_id, app_secret = body.get("AppID"), body.get("AppSecret")
        app = self.world.apps.get(app_id) if isinstance(app_id, str) else None
        if not app_id or not app_secret or app is None or app.app_secret != app_secret:
            return JSONResponse({"code": NO_CREDENTIAL, "msg": "no credential", "data": None})
        if not (app.long_connection and app.published):
            # Feishu refuses discovery with HTTP 400 (seen in its SDKs' logs); the body is unconfirmed.
            return JSONResponse(
                {"code": LONG_CONNECTION_OFF, "msg": "the app does not receive events by long connection"},
                status_code=400,
            )
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = (app.app_id, time.time() + TICKET_TTL_SECONDS)
        device_id = uuid.uuid4().hex
        service_id = random.randint(1, 2**31 - 1)
        ws_base = str(request.base_url).replace("http", "ws", 1).rstrip("/")
        url = f"{ws_base}/callback/ws/connect?device_id={device_id}&service_id={service_id}&ticket={ticket}"
        return JSONResponse(
            {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self.world.config.client_config()}}
        )

    # --- connection ---------------------------------------------------------------------------------
    async def _refuse(
        self, websocket: WebSocket, status: int, msg: str, autherrcode: int | None = None
    ) -> None:
        headers = {"handshake-status": str(status), "handshake-msg": msg}
        if autherrcode is not None:
            headers["handshake-autherrcode"] = str(autherrcode)
        http_status = 403 if status == 403 else 401 if status == AUTH_FAILED else 400
        await websocket.send_denial_response(
            JSONResponse({"code": status, "msg": msg}, status_code=http_status, headers=headers)
        )

    async def connect(self, websocket: WebSocket) -> None:
        self.world.counters["callback/ws/connect"] += 1
        params = websocket.query_params
        ticket = self._tickets.get(params.get("ticket", ""))
        refusal = self.world.faults.refuse_handshakes
        if refusal:
            await self._refuse(
                websocket,
                int(refusal.get("status", AUTH_FAILED)),
                str(refusal.get("msg", "refused")),
                refusal.get("autherrcode"),
            )
            return
        if ticket is None or ticket[1] < time.time():
            await self._refuse(websocket, AUTH_FAILED, "auth failed: unknown or expired ticket", 1000040351)
            return
        app_id = ticket[0]
        live = self.connections.setdefault(app_id, [])
        if len(live) >= self.world.config.max_connections_per_app:
            await self._refuse(websocket, AUTH_FAILED, "exceed connection limit", EXCEED_CONN_LIMIT)
            return
        try:
            service_id = int(params.get("service_id", "0"))
        except ValueError:
            service_id = 0
        await websocket.accept()
        connection = Connection(websocket, app_id, params.get("device_id", uuid.uuid4().hex), service_id)
        live.append(connection)
        async with self._connection_arrived:
            self._connection_arrived.notify_all()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:  # Feishu speaks binary frames only; a text message is skipped
                    self.world.counters["ws.bad_frame"] += 1
                    continue
                await self._on_frame(connection, data)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                live.remove(connection)

    async def _on_frame(self, connection: Connection, data: bytes) -> None:
        if self.world.faults.silent:
            return
        try:
            frame = decode(data)
        except FrameError:
            log.warning("emulator_bad_frame device_id=%s", connection.device_id)
            self.world.counters["ws.bad_frame"] += 1
            return
        if frame.method == FrameMethod.CONTROL and frame.type == FrameType.PING:
            connection.pings += 1
            self.world.counters["ws.ping"] += 1
            pong = Frame(
                seq_id=0,
                log_id=0,
                service=frame.service,
                method=FrameMethod.CONTROL,
                headers=[("type", FrameType.PONG)],
                payload=json.dumps(self.world.config.client_config()).encode(),
            )
            await connection.send(pong)
            return
        if frame.method == FrameMethod.DATA:
            delay = self.world.faults.ack_delay_seconds
            if delay > 0:
                self._spawn(self._take_ack_later(connection, frame, delay))
            else:
                self._take_ack(connection, frame)

    async def _take_ack_later(self, connection: Connection, frame: Frame, delay: float) -> None:
        await asyncio.sleep(delay)
        self._take_ack(connection, frame)

    def _take_ack(self, connection: Connection, frame: Frame) -> None:
        delivery = self._by_frame_message_id.get(frame.header("message_id") or "")
        if delivery is None:
            self.world.counters["ws.ack_unknown"] += 1
            return
        try:
            ack = parse_ack_payload(frame.payload)
        except FrameError:
            self.world.counters["ws.ack_malformed"] += 1
            return
        connection.acks += 1
        self.world.counters["ws.ack"] += 1
        if not delivery.acked.is_set():
            delivery.ack, delivery.ack_device_id = ack, connection.device_id
            delivery.ack_biz_rt = frame.header("biz_rt")
            delivery.acked_at = time.perf_counter()
            delivery.acked.set()

    # --- pushing events -----------------------------------------------------------------------------
    def push(self, app_id: str, event: dict[str, Any]) -> Delivery:
        header = event.get("header")
        header = header if isinstance(header, dict) else {}
        return self.push_raw(
            app_id,
            json.dumps(event, ensure_ascii=False).encode(),
            event_id=str(header.get("event_id") or ""),
            event_type=str(header.get("event_type", "")),
        )

    def push_raw(self, app_id: str, payload: bytes, *, event_id: str = "", event_type: str = "") -> Delivery:
        """Push any bytes as an event payload (also malformed ones, to test how a client copes)."""
        delivery = Delivery(app_id, event_id or uuid.uuid4().hex, event_type, payload)
        self.deliveries[delivery.event_id] = delivery
        app = self.world.apps.get(app_id)
        if app is not None and app.callback_url:
            self._spawn(self._deliver_http(delivery, app))
        else:
            self._spawn(self._deliver(delivery))
        return delivery

    async def _deliver_http(self, delivery: Delivery, app: App) -> None:
        """HTTP callback mode: POST (encrypted and signed with an encrypt key); retried on failure."""
        config = self.world.config
        async with httpx.AsyncClient(timeout=config.ack_timeout_seconds) as http:
            for _ in range(config.max_delivery_attempts):
                body, headers = webhook_request(delivery.payload, app.encrypt_key)
                delivery.attempts.append({"device_id": "http", "message_id": "", "at": time.time()})
                try:
                    response = await http.post(app.callback_url, content=body, headers=headers)
                except httpx.HTTPError:
                    self.world.counters["http.callback_failed"] += 1
                    await asyncio.sleep(config.ack_timeout_seconds)
                    continue
                self.world.counters[f"http.callback_{response.status_code}"] += 1
                if response.status_code == 200:
                    try:
                        data = response.json()
                    except ValueError:
                        data = None
                    delivery.ack = AckPayload(200, data)
                    delivery.ack_device_id = "http"
                    delivery.acked.set()
                    return
                delivery.ack = AckPayload(response.status_code, None)
                await asyncio.sleep(config.ack_timeout_seconds)
        delivery.gave_up = True

    async def _deliver(self, delivery: Delivery) -> None:
        config = self.world.config
        for _ in range(config.max_delivery_attempts):
            connection = await self._pick(delivery.app_id, wait=config.ack_timeout_seconds)
            if connection is not None:
                try:
                    await self._send_parts(connection, delivery)
                except Exception:  # the connection went away mid-send: next attempt
                    log.debug("emulator_send_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivery.acked.wait(), timeout=config.ack_timeout_seconds)
                return
            if connection is not None:
                self.world.counters["ws.redelivery"] += 1
        delivery.gave_up = True

    async def _pick(self, app_id: str, *, wait: float) -> Connection | None:
        async def some() -> Connection:
            async with self._connection_arrived:
                await self._connection_arrived.wait_for(
                    lambda: bool(self.connections.get(app_id)) and not self.world.faults.silent
                )
                return random.choice(self.connections[app_id])

        try:
            return await asyncio.wait_for(some(), timeout=wait)
        except TimeoutError:
            return None

    async def _send_parts(self, connection: Connection, delivery: Delivery) -> None:
        size = max(1, self.world.config.fragment_bytes)
        parts = [delivery.payload[i : i + size] for i in range(0, len(delivery.payload), size)] or [b""]
        frame_message_id = uuid.uuid4().hex
        self._by_frame_message_id[frame_message_id] = delivery
        delivery.attempts.append(
            {"device_id": connection.device_id, "message_id": frame_message_id, "at": time.time()}
        )
        trace_id = uuid.uuid4().hex
        for seq, part in enumerate(parts):
            self._seq += 1
            if seq == len(parts) - 1:
                delivery.last_sent_at = time.perf_counter()  # before the await: the ack may beat its return
            await connection.send(
                Frame(
                    seq_id=self._seq,
                    log_id=random.randint(1, 2**62),
                    service=connection.service_id,
                    method=FrameMethod.DATA,
                    headers=[
                        ("type", FrameType.EVENT),
                        ("message_id", frame_message_id),
                        ("sum", str(len(parts))),
                        ("seq", str(seq)),
                        ("trace_id", trace_id),
                    ],
                    payload=part,
                )
            )
        self.world.counters["ws.event_pushed"] += 1

    # --- faults and lifecycle -----------------------------------------------------------------------
    async def drop_all(self) -> int:
        dropped = 0
        for live in self.connections.values():
            for connection in list(live):
                with contextlib.suppress(Exception):
                    await connection.websocket.close(code=1011, reason="dropped by the emulator")
                dropped += 1
                with contextlib.suppress(ValueError):
                    live.remove(connection)
        return dropped

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> None:
        self.deliveries.clear()
        self._by_frame_message_id.clear()
