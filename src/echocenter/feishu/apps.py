"""The Feishu apps this instance holds: one per connector with credentials, each with its Open API client.

One registry, shared: the bridge (the connection manager) fills it as connectors come, change and go; the
outbox, contacts, reactions, attachments and streaming cards read their connector's client from it. So none
of them needs the bridge, and the bridge can be built after them (app.py wires in a straight line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from echocenter.feishu.openapi import OpenApiClient


@dataclass
class FeishuApp:
    """What is kept per connector: its Open API client, bot identity and live connection."""

    fingerprint: tuple[str, str]  # (app_id, app_secret): a change means a new client and connection
    openapi: OpenApiClient
    bot_open_id: str | None = None
    connection: asyncio.Task[None] | None = None
    last_event_write: float = 0.0
    bot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class FeishuApps:
    def __init__(self) -> None:
        self._apps: dict[int, FeishuApp] = {}

    def openapi(self, connector_id: int) -> OpenApiClient | None:
        """The connector's Open API client; None while it has no credentials (or is unknown here)."""
        app = self._apps.get(connector_id)
        return app.openapi if app else None

    def get(self, connector_id: int) -> FeishuApp | None:
        return self._apps.get(connector_id)

    def put(self, connector_id: int, app: FeishuApp) -> None:
        self._apps[connector_id] = app

    def remove(self, connector_id: int) -> None:
        self._apps.pop(connector_id, None)

    def clear(self) -> None:
        self._apps.clear()

    def __iter__(self) -> Iterator[int]:
        """Connector ids (a snapshot: the registry may change while the caller awaits)."""
        return iter(list(self._apps))
