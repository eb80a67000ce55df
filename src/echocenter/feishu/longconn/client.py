"""Our asyncio long-connection client: discovery, connect, ping, ack once stored, reconnect with backoff.

It moves bytes only; the rules live in ``protocol.py`` and ``frames.py``. Handlers get whole event
payloads (bytes). A message event is acked when its handler returns — the handler stores the event (the
durable claim) and leaves the work for later; if it raises, no ack is sent, so Feishu pushes the event again.
A card callback's answer rides in the ack, so its handler gets ``card_deadline`` seconds, after which ``{}``
with a toast is sent instead. Each event is handled in a task of its own: the receive loop never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from echocenter import metrics
from echocenter.feishu.longconn.frames import Frame, FrameError, FrameMethod, FrameType, decode, encode
from echocenter.feishu.longconn.protocol import (
    ClientConfig,
    ConnState,
    LongConnError,
    Reassembler,
    ack_frame,
    backoff,
    classify_discovery,
    classify_handshake,
    ping_frame,
    pong_config,
)

log = logging.getLogger(__name__)

ENDPOINT_PATH = "/callback/ws/endpoint"
CARD_TIMEOUT_TOAST = {
    "toast": {"type": "warning", "content": "Still working on it — please check back shortly."}
}

EventHandler = Callable[[bytes], Awaitable[None]]
CardHandler = Callable[[bytes], Awaitable[Any]]
StateHandler = Callable[["StateChange"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StateChange:
    state: ConnState
    error: str | None = None
    fatal: bool = False
    url_host: str | None = None


def _is_card_callback(payload: bytes) -> bool:
    # Cheap check before a full parse: card callbacks must be answered inside the ack.
    if b"card.action.trigger" not in payload:
        return False
    try:
        body = json.loads(payload)
    except ValueError:
        return False
    header = body.get("header") if isinstance(body, dict) else None
    return isinstance(header, dict) and header.get("event_type") == "card.action.trigger"


class LongConnClient:
    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str,
        http: httpx.AsyncClient,
        on_event: EventHandler,
        on_card: CardHandler,
        on_state: StateHandler,
        discovery_timeout: float = 10.0,
        card_deadline: float = 2.5,
        backoff_cap: float = 60.0,
        stable_after: float = 30.0,
    ) -> None:
        self._app_id = app_id
        self._app_secret = app_secret
        self._base_url = base_url.rstrip("/")
        self._http = http
        self._on_event = on_event
        self._on_card = on_card
        self._on_state = on_state
        self._discovery_timeout = discovery_timeout
        self._card_deadline = card_deadline
        self._backoff_cap = backoff_cap
        self._stable_after = stable_after
        self._config = ClientConfig()
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self.state = ConnState.DISCONNECTED
        self._last_fatal = False

    # --- the reconnect loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and stay connected until cancelled. Never gives up; every failure is reported."""
        delays = backoff(first_max=1.0, cap=self._backoff_cap)
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._set_state(StateChange(ConnState.CONNECTING))
                    url = await self._discover()
                    await self._session(url)
                    await self._set_state(
                        StateChange(ConnState.DISCONNECTED, "connection closed by the server")
                    )
                except LongConnError as exc:
                    await self._set_state(StateChange(ConnState.ERROR, str(exc), fatal=exc.fatal))
                except (OSError, WebSocketException, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    await self._set_state(StateChange(ConnState.DISCONNECTED, error))
                if time.monotonic() - started > self._stable_after:
                    delays = backoff(first_max=1.0, cap=self._backoff_cap)  # it was up a while: start over
                # A fatal refusal (bad credentials, too many connections) is retried at the slowest pace.
                await asyncio.sleep(self._backoff_cap if self._last_fatal else next(delays))
        finally:
            await self._cancel_tasks()

    async def _set_state(self, change: StateChange) -> None:
        self.state = change.state
        self._last_fatal = change.fatal
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
        if not isinstance(body, dict):
            raise LongConnError("discovery answer is not a JSON object")
        code = body.get("code")
        if code != 0:
            return self._raise_discovery(code, body.get("msg"), response.status_code)
        data = body.get("data") or {}
        url = data.get("URL") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise LongConnError("discovery answer has no WebSocket URL")
        self._config = ClientConfig.from_json(data.get("ClientConfig"), self._config)
        return url

    @staticmethod
    def _raise_discovery(code: Any, msg: Any, status: int) -> str:
        if not isinstance(code, int):
            raise LongConnError(f"discovery answered HTTP {status} without a code")
        raise classify_discovery(code, msg if isinstance(msg, str) else "")

    # --- one connection -----------------------------------------------------------------------------
    async def _session(self, url: str) -> None:
        query = parse_qs(urlparse(url).query)
        try:
            service_id = int(query.get("service_id", ["0"])[0])
        except ValueError:
            service_id = 0
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
            raise classify_handshake(exc.response.status_code, headers) from exc
        async with ws:
            await self._set_state(StateChange(ConnState.CONNECTED, url_host=urlparse(url).netloc))
            pinger = asyncio.create_task(self._ping_loop(ws, service_id))
            try:
                await self._receive_loop(ws)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger

    async def _ping_loop(self, ws: ClientConnection, service_id: int) -> None:
        while True:
            with contextlib.suppress(ConnectionClosed):
                await self._send(ws, ping_frame(service_id))
            await asyncio.sleep(self._config.ping_interval)

    async def _receive_loop(self, ws: ClientConnection) -> None:
        reassembler = Reassembler()
        while True:
            # A receive watchdog for half-open connections: the server answers every ping with a pong,
            # so silence for several ping intervals means the peer is gone without a close.
            watchdog = self._config.ping_interval * 2 + 5
            try:
                async with asyncio.timeout(watchdog):
                    data = await ws.recv()
            except TimeoutError as exc:
                raise LongConnError(f"nothing received for {watchdog:g} s: connection presumed dead") from exc
            except ConnectionClosed:
                return
            if not isinstance(data, bytes):
                log.warning("longconn_text_message_skipped")
                continue
            try:
                frame = decode(data)
            except FrameError:
                log.warning("longconn_bad_frame_skipped", exc_info=True)
                continue
            await self._on_frame(ws, frame, reassembler)

    async def _on_frame(self, ws: ClientConnection, frame: Frame, reassembler: Reassembler) -> None:
        received = time.monotonic()
        if frame.method == FrameMethod.CONTROL:
            if frame.type == FrameType.PONG:
                self._config = pong_config(frame, self._config)
            return
        if frame.method != FrameMethod.DATA or frame.type != FrameType.EVENT:
            return  # old-style "card" frames are not acked, as the official client does
        payload = reassembler.add(frame)
        if payload is None:
            return  # more parts to come; only the completing part is acked
        if _is_card_callback(payload):
            self._spawn(self._answer_card(ws, frame, payload, received))
            return
        self._spawn(self._take_event(ws, frame, payload, received))

    async def _take_event(self, ws: ClientConnection, frame: Frame, payload: bytes, received: float) -> None:
        try:
            await self._on_event(payload)
        except Exception:
            log.exception("longconn_event_not_stored")  # not acked: Feishu delivers it again
            return
        await self._send_ack(ws, frame, biz_rt_ms=int((time.monotonic() - received) * 1000))

    async def _answer_card(self, ws: ClientConnection, frame: Frame, payload: bytes, received: float) -> None:
        try:
            result = await asyncio.wait_for(self._on_card(payload), timeout=self._card_deadline)
            code = 200
        except TimeoutError:
            log.warning("longconn_card_deadline_passed")
            result, code = CARD_TIMEOUT_TOAST, 200
        except Exception:
            log.exception("longconn_card_handler_failed")
            result, code = {"toast": {"type": "error", "content": "Something went wrong."}}, 200
        await self._send_ack(
            ws,
            frame,
            code=code,
            data=result if result is not None else {},
            biz_rt_ms=int((time.monotonic() - received) * 1000),
        )

    async def _send_ack(
        self, ws: ClientConnection, frame: Frame, *, code: int = 200, data: Any = None, biz_rt_ms: int = 0
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(ws, ack_frame(frame, code=code, data=data, biz_rt_ms=biz_rt_ms))
        metrics.event_acked(biz_rt_ms / 1000)

    async def _send(self, ws: ClientConnection, frame: Frame) -> None:
        async with self._send_lock:
            await ws.send(encode(frame))

    # --- background work ----------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("longconn_handler_failed", exc_info=task.exception())

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
