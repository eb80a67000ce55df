"""Everything EchoCenter says in Feishu goes through here: text replies (split under Feishu's limit), cards,
card updates. Each send is logged as ``ws_outbound``; a Feishu ``uuid`` on every create makes retries safe."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid as uuid_lib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.models import LogLevel
from echocenter.feishu.openapi import FeishuError, OpenApiClient
from echocenter.integration_logs.service import LogAction, record_now

log = logging.getLogger(__name__)

TEXT_LIMIT_BYTES = 150 * 1024
TEXT_CHUNK_BYTES = 60 * 1024  # well under the limit, after JSON escaping
PART_UUID_BASE_MAX = 44  # leaves "-<part>" room within Feishu's 50-character uuid


class OutboundError(Exception):
    pass


def part_uuid_base(key: str) -> str:
    """A prefix for the parts' uuids (``<base>-<i>``, within Feishu's 50 characters) that stays distinct per
    key: a long key keeps its head and gains a digest of the whole, so two keys never share a uuid."""
    if len(key) <= PART_UUID_BASE_MAX:
        return key
    return key[:20] + "-" + hashlib.sha256(key.encode()).hexdigest()[: PART_UUID_BASE_MAX - 21]


def split_text(text: str, limit: int = TEXT_CHUNK_BYTES) -> list[str]:
    """Pieces of at most ``limit`` UTF-8 bytes, cut at line ends where possible."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > limit:  # a single huge line: cut it by characters
            cut = len(line.encode()[:limit].decode(errors="ignore"))
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:cut])
            line = line[cut:]
        if len((current + line).encode()) > limit:
            chunks.append(current)
            current = ""
        current += line
    if current or not chunks:
        chunks.append(current)
    return chunks


class Outbound:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clients: Any) -> None:
        self._sessions = sessions
        self._clients = clients  # anything with .openapi(connector_id) -> OpenApiClient | None (the bridge)

    def _client(self, connector_id: int) -> OpenApiClient:
        client: OpenApiClient | None = self._clients.openapi(connector_id)
        if client is None:
            raise OutboundError(f"connector {connector_id} has no credentials to send with")
        return client

    async def _log(self, connector_id: int, ok: bool, **detail: Any) -> None:
        await record_now(
            self._sessions,
            connector_id=connector_id,
            action=LogAction.WS_OUTBOUND,
            level=LogLevel.INFO if ok else LogLevel.ERROR,
            ok=ok,
            **detail,
        )

    async def _create(
        self,
        connector_id: int,
        *,
        kind: str,
        chat_id: str,
        msg_type: str,
        content: dict[str, Any],
        reply_to: str | None,
        uuid: str,
        in_thread: bool = False,
    ) -> str:
        client = self._client(connector_id)
        body: dict[str, Any] = {
            "msg_type": msg_type,
            "content": json.dumps(content, ensure_ascii=False),
            "uuid": uuid,
        }
        if in_thread and reply_to:  # the answer to a message in a thread stays in that thread
            body["reply_in_thread"] = True
        try:
            if reply_to:
                data = await client.call("POST", f"/open-apis/im/v1/messages/{reply_to}/reply", json=body)
            else:
                data = await client.call(
                    "POST",
                    "/open-apis/im/v1/messages",
                    params={"receive_id_type": "chat_id"},
                    json={**body, "receive_id": chat_id},
                )
        except FeishuError as exc:
            await self._log(
                connector_id, False, kind=kind, chat_id=chat_id, reply_to=reply_to, **exc.detail()
            )
            raise OutboundError(str(exc)) from exc
        message_id = str(data.get("message_id", ""))
        await self._log(
            connector_id, True, kind=kind, chat_id=chat_id, reply_to=reply_to, message_id=message_id
        )
        return message_id

    async def send_text(
        self,
        connector_id: int,
        *,
        chat_id: str,
        text: str,
        reply_to: str | None = None,
        uuid: str | None = None,
        in_thread: bool = False,
    ) -> list[str]:
        """Send (or reply with) text, split under Feishu's limit. Returns the message ids."""
        base = part_uuid_base(uuid or uuid_lib.uuid4().hex)
        ids = []
        for i, chunk in enumerate(split_text(text)):
            ids.append(
                await self._create(
                    connector_id,
                    kind="text",
                    chat_id=chat_id,
                    msg_type="text",
                    content={"text": chunk},
                    reply_to=reply_to,
                    uuid=f"{base}-{i}",
                    in_thread=in_thread,
                )
            )
        return ids

    async def send_card(
        self,
        connector_id: int,
        *,
        chat_id: str,
        card: dict[str, Any],
        reply_to: str | None = None,
        uuid: str | None = None,
        in_thread: bool = False,
    ) -> str:
        return await self._create(
            connector_id,
            kind="card",
            chat_id=chat_id,
            msg_type="interactive",
            content=card,
            reply_to=reply_to,
            uuid=uuid or uuid_lib.uuid4().hex,
            in_thread=in_thread,
        )

    async def update_card(self, connector_id: int, *, message_id: str, card: dict[str, Any]) -> None:
        client = self._client(connector_id)
        try:
            await client.call(
                "PATCH",
                f"/open-apis/im/v1/messages/{message_id}",
                json={"content": json.dumps(card, ensure_ascii=False)},
            )
        except FeishuError as exc:
            await self._log(connector_id, False, kind="card_update", message_id=message_id, **exc.detail())
            raise OutboundError(str(exc)) from exc
        await self._log(connector_id, True, kind="card_update", message_id=message_id)
