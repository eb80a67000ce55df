"""People by name: Feishu's contact API (``GET /open-apis/contact/v3/users/:user_id?user_id_type=open_id`` →
``data.user.name``), cached with a TTL. When Feishu refuses (no contact scope: 99991672; a user outside the
app's contact range: 41050; anything else) the open_id stands in for the name, and the refusal is logged
once per connector, not once per lookup."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.models import LogLevel
from echocenter.feishu.apps import FeishuApps
from echocenter.feishu.openapi import FeishuError, OpenApiClient
from echocenter.integration_logs.service import LogAction, record_now

log = logging.getLogger(__name__)

MAX_CACHED = 10_000
NAME_LIMIT = 128


class ContactDirectory:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clients: FeishuApps, *, ttl_seconds: float
    ) -> None:
        self._sessions = sessions
        self._clients = clients
        self._ttl = ttl_seconds
        self._cache: OrderedDict[tuple[int, str], tuple[str, float]] = OrderedDict()
        self._refusal_logged: set[int] = set()

    async def name(self, connector_id: int | None, open_id: str) -> str:
        """The person's display name, or their open_id when Feishu will not say."""
        if connector_id is None or not open_id.startswith("ou_"):
            return open_id
        key = (connector_id, open_id)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        name = await self._lookup(connector_id, open_id)
        self._cache[key] = (name, time.monotonic() + self._ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return name

    async def _lookup(self, connector_id: int, open_id: str) -> str:
        client: OpenApiClient | None = self._clients.openapi(connector_id)
        if client is None:
            return open_id
        try:
            data = await client.call(
                "GET",
                f"/open-apis/contact/v3/users/{quote(open_id, safe='')}",
                params={"user_id_type": "open_id"},
            )
        except FeishuError as exc:
            await self._refused(connector_id, exc)
            return open_id
        user = data.get("user")
        name = user.get("name") if isinstance(user, dict) else None
        if not isinstance(name, str) or not name.strip():
            return open_id
        return name.strip()[:NAME_LIMIT]

    async def _refused(self, connector_id: int, exc: FeishuError) -> None:
        if connector_id in self._refusal_logged:
            return
        self._refusal_logged.add(connector_id)
        await record_now(
            self._sessions,
            connector_id=connector_id,
            action=LogAction.CONTACT_LOOKUP_REFUSED,
            level=LogLevel.WARN,
            fallback="open_id",
            fix="grant the app a contact scope (e.g. contact:user.base:readonly) and widen its contact range",
            **exc.detail(),
        )
