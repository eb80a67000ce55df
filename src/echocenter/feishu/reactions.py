"""A sign of life: an emoji reaction on the person's message while the Butler thinks, removed when the
answer is posted. Best effort: a reaction that cannot be added or removed never holds up the answer."""

from __future__ import annotations

import logging

from echocenter.feishu.apps import FeishuApps
from echocenter.feishu.openapi import FeishuError, OpenApiClient

log = logging.getLogger(__name__)


class Reactions:
    def __init__(self, clients: FeishuApps) -> None:
        self._clients = clients

    def _client(self, connector_id: int) -> OpenApiClient | None:
        client: OpenApiClient | None = self._clients.openapi(connector_id)
        return client

    async def add(self, connector_id: int, message_id: str, emoji_type: str) -> str | None:
        """The reaction's id, or None when it could not be added (logged)."""
        client = self._client(connector_id)
        if client is None or not emoji_type:
            return None
        try:
            data = await client.call(
                "POST",
                f"/open-apis/im/v1/messages/{message_id}/reactions",
                json={"reaction_type": {"emoji_type": emoji_type}},
            )
        except FeishuError as exc:
            log.warning("reaction_not_added message_id=%s error=%s", message_id, exc)
            return None
        reaction_id = data.get("reaction_id")
        return reaction_id if isinstance(reaction_id, str) and reaction_id else None

    async def remove(self, connector_id: int, message_id: str, reaction_id: str) -> None:
        client = self._client(connector_id)
        if client is None:
            return
        try:
            await client.call("DELETE", f"/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}")
        except FeishuError as exc:
            log.warning("reaction_not_removed message_id=%s error=%s", message_id, exc)
