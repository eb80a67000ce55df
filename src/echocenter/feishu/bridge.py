"""The Feishu bridge: one long connection per connector with credentials, and the one seam both transports
(long connection, HTTP callback) hand their typed events to: ``on_event`` and ``answer_card``.

Connections follow the connectors: whoever changes one (the API, on any instance) publishes
``{"kind": "connector", "id": N}`` on the event bus, and every instance's ``connector_changed`` starts,
restarts or stops its connection within a second. A slow ``reconcile`` against ``updated_at`` catches what a
listener missed while it was down. Each instance writes its own state per connector
(``connector_instance_status``); the API combines them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from echocenter import metrics
from echocenter.cluster.bus import EventBus, InProcessBus
from echocenter.cluster.upsert import upsert
from echocenter.contracts import CardActionEvent, CardHandler, MessageHandler
from echocenter.db.models import (
    ConnectorInstanceStatus,
    FeishuConnector,
    InboundStatus,
    LogLevel,
)
from echocenter.db.types import utcnow
from echocenter.feishu.apps import FeishuApp, FeishuApps
from echocenter.feishu.card_answer import answer_within
from echocenter.feishu.connector_config import read_secret
from echocenter.feishu.events import (
    EventParseError,
    MessageEvent,
    OtherEvent,
    parse_event,
)
from echocenter.feishu.inbound import Admission, InboundPipeline, Outcome
from echocenter.feishu.inbox import Inbox, Work, instance_name
from echocenter.feishu.longconn.client import LongConnClient
from echocenter.feishu.longconn.protocol import ConnState, StateChange
from echocenter.feishu.openapi import FeishuError, OpenApiClient
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime
from echocenter.taskset import TaskSet

log = logging.getLogger(__name__)

LAST_EVENT_WRITE_INTERVAL = 1.0
BOT_ID_TIMEOUT = 5.0

_STATE_LOG = {
    ConnState.CONNECTING: (LogAction.WS_CONNECTING, LogLevel.INFO),
    ConnState.CONNECTED: (LogAction.WS_CONNECTED, LogLevel.INFO),
    ConnState.DISCONNECTED: (LogAction.WS_DISCONNECTED, LogLevel.WARN),
    ConnState.ERROR: (LogAction.WS_CLIENT_ERROR, LogLevel.ERROR),
}


class FeishuBridge:
    def __init__(
        self,
        runtime: Runtime,
        *,
        apps: FeishuApps,
        butler: MessageHandler,
        card_handler: CardHandler,
        bus: EventBus | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._bus = bus or InProcessBus(runtime.settings.resolved_instance_id)
        self._instance_id = self._bus.instance_id
        self._known: dict[int, Any] = {}  # connector id -> updated_at last reconciled (the slow catch-up)
        self._butler = butler
        self._card_handler = card_handler
        self._apps = apps
        owner = instance_name()
        lease = timedelta(seconds=self._settings.inbox_lease_seconds)
        self._pipeline = InboundPipeline(runtime.engine, lease=lease, owner=owner)
        self._inbox = Inbox(
            runtime.engine,
            owner=owner,
            lease=lease,
            retry_after=timedelta(seconds=self._settings.inbox_retry_seconds),
            max_attempts=self._settings.inbox_max_attempts,
        )
        self._tasks = TaskSet("feishu-bridge")
        self._spawn = self._tasks.spawn
        self._lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._bus.subscribe("connector", self._on_connector_notice)
        self._bus.on_resync(self.reconcile)
        await self.reconcile()

    async def _on_connector_notice(self, payload: dict[str, Any]) -> None:
        connector_id = payload.get("id")
        if isinstance(connector_id, int):
            await self.connector_changed(connector_id)

    async def reconcile(self) -> None:
        """Catch up with every connector whose ``updated_at`` moved (or that appeared or went) unseen."""
        async with self._runtime.sessions() as session:
            stored = {
                cid: at
                for cid, at in await session.execute(select(FeishuConnector.id, FeishuConnector.updated_at))
            }
        for connector_id in sorted(set(stored) | set(self._apps) | set(self._known)):
            if connector_id not in stored or self._known.get(connector_id) != stored[connector_id]:
                await self.connector_changed(connector_id)

    async def stop(self) -> None:
        async with self._lock:
            for connector_id in self._apps:
                await self._stop_connection(connector_id)
            self._apps.clear()
        await self._tasks.stop()

    async def announce(self, connector_id: int) -> None:
        """A connector was saved here: follow it now, and tell every other instance."""
        await self.connector_changed(connector_id)
        await self._bus.publish("connector", id=connector_id)

    async def connector_changed(self, connector_id: int) -> None:
        """Bring this connector's connection in line with what is stored."""
        async with self._lock:
            credentials = await self._stored_credentials(connector_id)
            current = self._apps.get(connector_id)
            if credentials is None:
                if current:
                    await self._stop_connection(connector_id)
                    self._apps.remove(connector_id)
                    await self._write_status(connector_id, ConnState.DISCONNECTED, None)
                return
            app_id, secret = credentials
            fingerprint = (app_id, secret)
            if current and current.fingerprint == fingerprint:
                if self._settings.feishu_ws_enabled and current.connection is None:
                    self._start_connection(connector_id, current)
                return
            if current:
                await self._stop_connection(connector_id)
            app = FeishuApp(
                fingerprint,
                OpenApiClient(
                    self._runtime.http,
                    base_url=self._settings.feishu_base_url,
                    app_id=app_id,
                    app_secret=secret,
                    timeout=self._settings.feishu_http_timeout,
                    reload_credentials=lambda: self._credentials_refused(connector_id),
                ),
            )
            self._apps.put(connector_id, app)
            if self._settings.feishu_ws_enabled:
                self._start_connection(connector_id, app)

    async def _stored_credentials(self, connector_id: int) -> tuple[str, str] | None:
        async with self._runtime.sessions() as session:
            connector = await session.get(FeishuConnector, connector_id)
            if connector is None:
                self._known.pop(connector_id, None)
                return None
            self._known[connector_id] = connector.updated_at
            secret = read_secret(self._runtime.secrets, connector, "app_secret")
        return (connector.app_id, secret) if connector.app_id and secret else None

    async def _credentials_refused(self, connector_id: int) -> tuple[str, str] | None:
        """Feishu refused this instance's credentials: read them again (another instance may have stored
        new ones), and bring the long connection in line too."""
        self._spawn(self.connector_changed(connector_id))
        return await self._stored_credentials(connector_id)

    def _start_connection(self, connector_id: int, app: FeishuApp) -> None:
        app_id, secret = app.fingerprint
        client = LongConnClient(
            app_id=app_id,
            app_secret=secret,
            base_url=self._settings.feishu_ws_url or self._settings.feishu_base_url,
            http=self._runtime.http,
            on_payload=lambda payload: self.from_long_connection(connector_id, payload),
            on_state=lambda change: self._on_state(connector_id, change),
            discovery_timeout=self._settings.feishu_http_timeout,
            backoff_cap=self._settings.feishu_ws_backoff_cap,
        )
        app.connection = asyncio.create_task(client.run(), name=f"feishu-ws-{connector_id}")

    async def _stop_connection(self, connector_id: int) -> None:
        app = self._apps.get(connector_id)
        if app and app.connection:
            app.connection.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await app.connection
            app.connection = None

    @property
    def instance_id(self) -> str:
        return self._instance_id

    # --- status -------------------------------------------------------------------------------------
    async def _on_state(self, connector_id: int, change: StateChange) -> None:
        action, level = _STATE_LOG[change.state]
        detail: dict[str, Any] = {}
        if change.error:
            detail["error"] = change.error
        if change.fatal:
            detail["fatal"] = True
        if change.url_host:
            detail["host"] = change.url_host
        await self._write_status(connector_id, change.state, change.error)
        if change.fatal:
            # Refused for good with these credentials: maybe they changed on another instance. Reload now
            # (in its own task: this runs inside the connection that a reload may replace).
            self._spawn(self.connector_changed(connector_id))
        await record_now(
            self._runtime.sessions, connector_id=connector_id, action=action, level=level, **detail
        )
        if change.state is ConnState.CONNECTED:
            self._spawn(self._learn_bot_open_id(connector_id))

    async def _write_status(self, connector_id: int, state: ConnState, error: str | None) -> None:
        """This instance's own row: instances never overwrite each other's state."""
        row = {
            "connector_id": connector_id,
            "instance_id": self._instance_id,
            "state": state.value,
            "last_error": None if state is ConnState.CONNECTED else error,
            "updated_at": utcnow(),
        }
        try:
            async with self._runtime.sessions() as session:
                await upsert(
                    session,
                    ConnectorInstanceStatus.__table__,  # type: ignore[arg-type]
                    [row],
                    keys=["connector_id", "instance_id"],
                    update=["state", "last_error", "updated_at"]
                    if error or state is ConnState.CONNECTED
                    else ["state", "updated_at"],
                )
                await session.commit()
        except IntegrityError:
            pass  # the connector was deleted meanwhile: nothing to record it on

    async def _touch_last_event(self, connector_id: int) -> None:
        app = self._apps.get(connector_id)
        now = time.monotonic()
        if app is None or now - app.last_event_write < LAST_EVENT_WRITE_INTERVAL:
            return
        app.last_event_write = now
        async with self._runtime.sessions() as session:
            await session.execute(
                update(FeishuConnector)
                .where(FeishuConnector.id == connector_id)
                .values(last_event_at=utcnow())
            )
            await session.commit()

    async def _learn_bot_open_id(self, connector_id: int) -> str | None:
        app = self._apps.get(connector_id)
        if app is None:
            return None
        async with app.bot_lock:
            if app.bot_open_id is None:
                try:
                    app.bot_open_id = await asyncio.wait_for(app.openapi.bot_open_id(), BOT_ID_TIMEOUT)
                except (FeishuError, TimeoutError) as exc:
                    await record_now(
                        self._runtime.sessions,
                        connector_id=connector_id,
                        action=LogAction.WS_CLIENT_ERROR,
                        level=LogLevel.WARN,
                        error=f"cannot learn the bot's open_id: {exc}",
                    )
            return app.bot_open_id

    # --- the transport seam: both transports build a typed event and call on_event or answer_card ------
    async def on_event(
        self, connector_id: int, event: MessageEvent | OtherEvent, *, transport: str
    ) -> Admission | None:
        """Handle one event; when this returns, the event may be acked (a message is durable in the inbox,
        and its routing runs in the background). Raises only when the event could not be stored (database
        away): then it must not be acked, so Feishu pushes it again."""
        metrics.event_received(transport)
        self._spawn(self._touch_last_event(connector_id))  # bookkeeping: not on the way to the ack
        if isinstance(event, OtherEvent):
            await record_now(
                self._runtime.sessions,
                connector_id=connector_id,
                action=LogAction.WS_EVENT_IGNORED,
                event_type=event.event_type or "(none)",
                event_id=event.event_id,
                transport=transport,
            )
            return None
        admission = await self._pipeline.admit(
            connector_id=connector_id,
            event=event,
            bot_open_id=await self._learn_bot_open_id(connector_id),
            transport=transport,
        )
        metrics.event_outcome(admission.outcome, admission.reason)
        if admission.outcome is Outcome.ADMITTED:
            assert admission.row_id is not None and admission.message is not None
            work = Work(admission.row_id, InboundStatus.RECEIVED, admission.message)
            self._spawn(self._inbox.drive(work, self._butler))
        return admission

    async def answer_card(self, connector_id: int, event: CardActionEvent) -> dict[str, Any]:
        """A card click, answered within the card deadline (inside the ack, or as the HTTP response). It
        never waits for message work: nothing here passes through the inbound pipeline."""
        # Not awaited: under the card deadline, the handler must start before any other database work.
        self._spawn(self._touch_last_event(connector_id))
        return await answer_within(
            self._card_handler(connector_id, event), self._settings.feishu_card_deadline
        )

    async def from_long_connection(self, connector_id: int, payload: bytes) -> dict[str, Any] | None:
        """The long connection's side of the seam: the payload read once into a typed event. Returns what
        rides in the ack (a card's answer; None for any other event)."""
        try:
            event = parse_event(payload)
        except EventParseError as exc:
            metrics.event_received("ws")
            await record_now(
                self._runtime.sessions,
                connector_id=connector_id,
                action=LogAction.WS_CLIENT_ERROR,
                level=LogLevel.WARN,
                error=f"unreadable event skipped: {exc}",
                transport="ws",
            )
            return None
        if isinstance(event, CardActionEvent):
            return await self.answer_card(connector_id, event)
        admission = await self.on_event(connector_id, event, transport="ws")
        if admission is not None and admission.outcome is Outcome.UNKNOWN_CONNECTOR:
            # Deleted (on this or another instance) while its connection was still up: say so, loudly.
            await record_now(
                self._runtime.sessions,
                connector_id=None,
                action=LogAction.UNKNOWN_CONNECTOR,
                level=LogLevel.WARN,
                unknown_connector_id=connector_id,
                transport="ws",
            )
            self._spawn(self.connector_changed(connector_id))  # closes the connection here too
        return None

    async def redrive(self) -> None:
        """The inbox sweep (periodic, and at start-up): finish what was left behind, here or elsewhere."""
        await self._inbox.sweep(self._butler, self._spawn)
