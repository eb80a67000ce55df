"""Instances tell each other that something changed, with a small payload such as
``{"kind": "connector", "id": 7}``; the receiver reads the data itself from the tables (notify-then-read).

Two implementations of one interface: in-process (SQLite, one instance) and PostgreSQL ``LISTEN/NOTIFY``
over a dedicated asyncpg connection that reconnects by itself. A notification sent while a listener was
down is lost; after reconnecting the bus calls its resync handlers, and slow reconciles catch the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]
LIVENESS_CHECK_SECONDS = 5.0
RECONNECT_CAP_SECONDS = 5.0


class EventBus:
    """Publish small notifications to every instance (this one included); ``to`` narrows it to one."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._handlers: dict[str, list[Handler]] = {}
        self._resync: list[Resync] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def on_resync(self, handler: Resync) -> None:
        """Called after the listener came back: notifications may have been missed meanwhile."""
        self._resync.append(handler)

    async def publish(self, kind: str, *, to: str | None = None, **fields: Any) -> None:
        """Never raises: a notice that cannot go out is logged; the slow reconciles catch up later."""
        payload: dict[str, Any] = {"kind": kind, **fields}
        if to is not None:
            payload["to"] = to
        try:
            await self._send(json.dumps(payload, separators=(",", ":")))
        except Exception as exc:
            log_event(log, "bus_publish_failed", level=logging.WARNING, kind=kind, error=type(exc).__name__)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, payload: str) -> None:
        raise NotImplementedError

    def _received(self, raw: str) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            log_event(log, "bus_payload_unreadable", level=logging.WARNING)
            return
        if not isinstance(payload, dict):
            return
        target = payload.get("to")
        if target is not None and target != self.instance_id:
            return
        for handler in self._handlers.get(str(payload.get("kind")), []):
            self._spawn(handler(payload))

    async def _run_resync(self) -> None:
        for handler in self._resync:
            await handler()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log_event(log, "bus_handler_failed", level=logging.ERROR, error=repr(t.exception()))

        task.add_done_callback(done)


class InProcessBus(EventBus):
    """One instance (SQLite): a notification goes straight to this process's handlers."""

    async def _send(self, payload: str) -> None:
        self._received(payload)


def channel_for(schema: str) -> str:
    # Channels are per database, not per schema: instances sharing a schema share a channel, others don't.
    return f"echocenter_{schema}" if schema else "echocenter"


class PostgresBus(EventBus):
    """``NOTIFY`` through the service's engine; ``LISTEN`` on one dedicated connection, reconnected."""

    def __init__(self, instance_id: str, *, engine: AsyncEngine, url: str, schema: str) -> None:
        super().__init__(instance_id)
        self._engine = engine
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.channel = channel_for(schema)
        self.listening = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="bus-listener")
        # Listen before this instance reads its starting state, so a change made meanwhile is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 10)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await super().stop()

    async def _send(self, payload: str) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": self.channel, "payload": payload}
            )
            await conn.commit()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._received(str(payload))

    async def _listen(self) -> None:
        delay, first = 0.2, True
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": f"echocenter-bus {self.instance_id}"[:63]}
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log_event(log, "bus_listener_unavailable", level=logging.WARNING, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_CAP_SECONDS, delay * 2)
                continue
            try:
                await conn.add_listener(self.channel, self._on_notify)
                delay = 0.2
                self.listening.set()
                log_event(log, "bus_listening", channel=self.channel)
                if not first:
                    self._spawn(self._run_resync())
                first = False
                await self._until_lost(conn)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log_event(log, "bus_listener_lost", level=logging.WARNING, error=type(exc).__name__)
            finally:
                self.listening.clear()
                conn.terminate()
            await asyncio.sleep(delay)

    @staticmethod
    async def _until_lost(conn: asyncpg.Connection[asyncpg.Record]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), LIVENESS_CHECK_SECONDS)
            except TimeoutError:
                # A dead TCP peer is not always reported: ask the server something now and then.
                await asyncio.wait_for(conn.fetchval("SELECT 1"), LIVENESS_CHECK_SECONDS)


def make_bus(instance_id: str, *, engine: AsyncEngine, url: str, schema: str) -> EventBus:
    if engine.dialect.name == "postgresql":
        return PostgresBus(instance_id, engine=engine, url=url, schema=schema)
    return InProcessBus(instance_id)
