"""Everything EchoCenter says in Feishu goes through here: text replies (split under Feishu's limit), cards,
card updates. Each becomes a durable outbox row (feishu/outbox.py), paced at Feishu's quotas, sent in order
per chat, logged as ``ws_outbound``; a Feishu ``uuid`` on every create makes retries safe."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid as uuid_lib
from collections.abc import Awaitable, Coroutine
from typing import Any

from echocenter.errors import UpstreamError
from echocenter.feishu.outbox import (
    NewRow,
    Outbox,
    OutboxFailed,
    card_content,
    card_lane,
    chat_lane,
    text_content,
)

log = logging.getLogger(__name__)

TEXT_CHUNK_BYTES = 60 * 1024  # well under the limit, after JSON escaping
PART_UUID_BASE_MAX = 44  # leaves "-<part>" room within Feishu's 50-character uuid


class OutboundError(UpstreamError):
    """Feishu did not take a send (in time). A 409 when it reaches a route (the admin's test message): the
    request is sound, Feishu refuses it for now; the outbox still owns the row."""

    status_code = 409
    code = "conflict"


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


def _text_rows(
    connector_id: int, chat_id: str, text: str, reply_to: str | None, uuid: str | None, in_thread: bool
) -> list[NewRow]:
    base = part_uuid_base(uuid or uuid_lib.uuid4().hex)
    return [
        NewRow(
            connector_id=connector_id,
            kind="text",
            lane=chat_lane(chat_id),
            content=text_content(chunk),
            uuid=f"{base}-{i}",
            chat_id=chat_id,
            target_message_id=reply_to or "",
            msg_type="text",
            in_thread=in_thread,
        )
        for i, chunk in enumerate(split_text(text))
    ]


class Outbound:
    """The callers' interface (unchanged by the outbox): each method writes outbox rows, then waits until
    Feishu accepted them and returns the message ids. The rows go out even if the caller is gone (a restart):
    the outbox owns delivery, the caller only waits for it."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def _send(self, rows: list[NewRow], wait_seconds: float | None = None) -> list[str]:
        return await self._sent(self._outbox.queue(rows), wait_seconds)

    async def _sent(self, written: Awaitable[list[int]], wait_seconds: float | None = None) -> list[str]:
        ids = await written
        try:
            return await asyncio.wait_for(self._outbox.wait_sent(ids), wait_seconds)
        except OutboxFailed as exc:  # logged as ws_outbound with Feishu's code by the outbox
            raise OutboundError(str(exc)) from exc
        except TimeoutError as exc:
            raise OutboundError(
                f"not sent within {wait_seconds:g} s (Feishu refuses or cannot be reached for now); "
                "it stays in the outbox and is sent when Feishu takes it"
            ) from exc

    def queue_text(
        self,
        connector_id: int,
        *,
        chat_id: str,
        text: str,
        reply_to: str | None = None,
        uuid: str | None = None,
        in_thread: bool = False,
    ) -> Coroutine[Any, Any, list[str]]:
        """Like ``send_text``, but the text takes its place in the chat's order at once, before the
        coroutine back is awaited (which waits until Feishu took it and returns the message ids)."""
        rows = _text_rows(connector_id, chat_id, text, reply_to, uuid, in_thread)
        return self._sent(self._outbox.queue(rows))

    async def send_text(
        self,
        connector_id: int,
        *,
        chat_id: str,
        text: str,
        reply_to: str | None = None,
        uuid: str | None = None,
        wait_seconds: float | None = None,
        in_thread: bool = False,
    ) -> list[str]:
        """Send (or reply with) text, split under Feishu's limit. Returns the message ids.

        ``wait_seconds``: give up waiting (OutboundError) after that long; the text is still sent later."""
        return await self._send(
            _text_rows(connector_id, chat_id, text, reply_to, uuid, in_thread), wait_seconds
        )

    async def send_card(
        self,
        connector_id: int,
        *,
        chat_id: str,
        card: dict[str, Any],
        reply_to: str | None = None,
        uuid: str | None = None,
        receive_id_type: str = "chat_id",
        in_thread: bool = False,
    ) -> str:
        """``chat_id`` names the receiver: a chat, or with ``receive_id_type="open_id"`` a person (a DM)."""
        (message_id,) = await self._send(
            [
                NewRow(
                    connector_id=connector_id,
                    kind="card",
                    lane=chat_lane(chat_id),
                    content=card_content(card),
                    uuid=(uuid or uuid_lib.uuid4().hex)[:50],
                    chat_id=chat_id,
                    target_message_id=reply_to or "",
                    msg_type="interactive",
                    receive_id_type=receive_id_type,
                    in_thread=in_thread,
                )
            ]
        )
        return message_id

    async def sent_message_id(self, connector_id: int, uuid: str) -> str | None:
        """The message id of what was sent with ``uuid``, if it has been sent (its sender may have been a
        later process than the caller that asked for it)."""
        return await self._outbox.sent_message_id(connector_id, uuid)

    async def update_card(self, connector_id: int, *, message_id: str, card: dict[str, Any]) -> None:
        await self._send(
            [
                NewRow(
                    connector_id=connector_id,
                    kind="card_update",
                    lane=card_lane(message_id),
                    content=card_content(card),
                    uuid=uuid_lib.uuid4().hex,  # a PATCH has no Feishu uuid; ours keeps rows apart
                    target_message_id=message_id,
                )
            ]
        )
