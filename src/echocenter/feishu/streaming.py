"""Streaming replies through CardKit: a card entity that grows as the model writes.

One ``CardStream`` per answer. The model's text arrives through ``push`` (cheap, never blocks the model);
a pump turns it into CardKit calls:

1. nothing happens until the first text, and then for ``first_update_after`` more: a reply finished by
   then stays a plain text reply (``finish`` returns False);
2. then the card entity is created (card JSON 2.0, ``streaming_mode: true``, the markdown element has an
   ``element_id``) and sent as the reply (``{"type":"card","data":{"card_id"}}``, a uuid per message);
3. the full text so far is put to the element at most once per ``min_interval`` (every CardKit call on the
   card counts, so create, updates and the close stay under Feishu's 10/s per card), with a strictly
   increasing ``sequence`` and a fresh ``uuid``;
4. ``finish`` puts the final text and turns streaming mode off (``PATCH …/settings``).

CardKit calls are ephemeral (a lost update is replaced by the next) and go straight to the Open API
client; only the card message itself is a normal send. The card entity used for a message is kept in
``streamed_replies``: a re-drive of the same message reuses it (the send's uuid then finds the first
message), so a person never sees two cards for one question; the re-driven answer overwrites the
half-streamed text and closes the card.

CardKit refused (no ``cardkit:card:write`` scope, an old client, …): the reply falls back to one text
message, and that connector is not offered CardKit again until restart (logged once, ``streaming_fallback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid as uuid_lib
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.contracts import InboundMessage
from echocenter.db.models import LogLevel, StreamedReply
from echocenter.db.types import utcnow
from echocenter.feishu.apps import FeishuApps
from echocenter.feishu.openapi import RATE_LIMIT_CODES, FeishuError, OpenApiClient
from echocenter.feishu.outbound import Outbound, OutboundError
from echocenter.feishu.untrusted import inert_markdown
from echocenter.integration_logs.service import LogAction, record_now

log = logging.getLogger(__name__)

ELEMENT_ID = "answer"
CARDS_PATH = "/open-apis/cardkit/v1/cards"
# CardKit's app-wide quota is 50/s and 1000/min: calls of all cards of one app are spaced to stay within
# the per-minute figure, the stricter of the two.
APP_CARDKIT_INTERVAL = 60 / 1000
# A card holds at most 30 KB of JSON: the answer on it is kept well under that, the rest follows as text.
CARD_TEXT_LIMIT_BYTES = 24 * 1024
MORE_BELOW = "\n\n…"
TextSink = Callable[[str], None]


def card_key(message_id: str, turn: int) -> str:
    """What ``streamed_replies`` keys a card by: the message for its first model turn (as before the agent
    loop), the message and turn for later ones (within the column's 64 characters)."""
    return message_id if turn == 1 else f"{message_id[:56]}#{turn}"


def stream_uuid(message_id: str, turn: int) -> str:
    """The card message's Feishu uuid (at most 50 characters): one per message and model turn."""
    if turn == 1:
        return f"stream-{message_id}"[:50]
    return "stream-" + hashlib.sha256(f"{message_id}#{turn}".encode()).hexdigest()[:40]


class Pace:
    """Calls at least ``interval`` apart: each caller reserves the next slot before it waits, so callers
    sharing one Pace (the cards of one app) never bunch up."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def split_for_card(text: str, limit: int = CARD_TEXT_LIMIT_BYTES) -> tuple[str, str]:
    """The part of ``text`` a card shows (cut at a line end where possible, measured as the card will
    hold it, i.e. made inert) and what is left for text replies."""
    if len(inert_markdown(text).encode()) <= limit:
        return text, ""
    budget, used, end = limit - len(MORE_BELOW.encode()), 0, 0
    for end, char in enumerate(text):  # noqa: B007 - ``end`` is where the budget ran out
        used += len(inert_markdown(char).encode())
        if used > budget:
            break
    head = text[:end]
    cut = head.rfind("\n")
    head = head[:cut] if cut > len(head) // 2 else head
    return head + MORE_BELOW, text[len(head) :].lstrip("\n")


def streaming_card(text: str) -> dict[str, Any]:
    """Card JSON 2.0 in streaming mode; the model's markdown is kept, made inert (see untrusted.py)."""
    return {
        "schema": "2.0",
        "config": {"streaming_mode": True, "update_multi": True, "summary": {"content": "…"}},
        "body": {
            "elements": [{"tag": "markdown", "element_id": ELEMENT_ID, "content": inert_markdown(text)}]
        },
    }


class CardStream:
    def __init__(
        self,
        streams: CardStreams,
        message: InboundMessage,
        client: OpenApiClient,
        *,
        first_update_after: float,
        min_interval: float,
        app_pace: Pace,
        turn: int = 1,
    ) -> None:
        self._streams = streams
        self._message = message
        self._turn = turn
        self._client = client
        self._first_after = first_update_after
        self._card_pace = Pace(min_interval)
        self._app_pace = app_pace
        self._text = ""
        self._shown: str | None = None
        self._changed = asyncio.Event()
        self._finished = False
        self._pump: asyncio.Task[None] | None = None
        self._sequence = 0
        self._epoch = 0.0  # when the card entity was created (wall clock): sequences grow from it
        self.card_id: str | None = None
        self.overflow = ""  # what did not fit on the card: the caller sends it as text
        self.failed = False
        self.first_text_at: float | None = None  # monotonic, for the benchmark
        self.first_shown_at: float | None = None
        self.updates = 0

    # --- what the brain calls ---------------------------------------------------------------------
    def push(self, text_so_far: str) -> None:
        if self._finished or self.failed:
            return
        self._text = text_so_far
        self._changed.set()
        if self._pump is None and text_so_far:
            self.first_text_at = time.monotonic()
            self._pump = asyncio.create_task(self._run())

    # --- what the Butler calls --------------------------------------------------------------------
    async def finish(self) -> bool:
        """End the stream. True when the answer is on a card (it now holds all the text pushed); False
        when nothing was shown yet (or CardKit was refused): the caller sends the answer as text."""
        self._finished = True
        self._changed.set()
        if self._pump is not None:
            await self._pump
        if self.card_id is None:
            return False
        shown, self.overflow = split_for_card(self._text)
        await self._put(shown)
        await self._close()
        return True

    async def abort(self) -> None:
        """The brain failed: close what was shown (it keeps its text) so the card stops 'typing'."""
        self._finished = True
        self._changed.set()
        if self._pump is not None:
            await self._pump
        if self.card_id is not None:
            with contextlib.suppress(FeishuError):
                await self._close()

    # --- the pump ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        await self._sleep_or_finish(self._first_after)  # a short answer is done by now: plain text
        if self._finished:
            return
        try:
            await self._open()
        except (FeishuError, OutboundError) as exc:
            self.failed = True
            await self._streams.refused(self._message.connector_id, exc)
            return
        while not self._finished:
            self._changed.clear()
            shown = split_for_card(self._text)[0]
            if shown != self._shown:
                try:
                    await self._put(shown)
                except FeishuError as exc:  # ephemeral: the next update (or the final one) replaces it
                    log.warning("stream_update_failed card_id=%s error=%s", self.card_id, exc)
            await self._changed.wait()

    async def _sleep_or_finish(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._finished and (left := deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def _paced(self) -> None:
        """CardKit calls on this card at least ``min_interval`` apart (Feishu: 10/s per card), and within
        the app's CardKit quota across all its cards."""
        await self._card_pace.wait()
        await self._app_pace.wait()

    def _next_sequence(self) -> int:
        # Strictly increasing, also across a re-drive on another instance: milliseconds since the card
        # entity was made, never below the last one + 1.
        self._sequence = max(self._sequence + 1, int((time.time() - self._epoch) * 1000))
        return self._sequence

    async def _open(self) -> None:
        message = self._message
        text = split_for_card(self._text)[0]
        card_id, created, reused = await self._streams.card_for(
            message, self._client, lambda: self._create(text), turn=self._turn
        )
        self.card_id = card_id
        self._epoch = created
        if reused:  # a re-drive: the first attempt's card (maybe closed) streams the new answer over it
            await self._set_streaming(True)
        await self._streams.outbound.send_card(
            message.connector_id,
            chat_id=message.chat_id,
            card={"type": "card", "data": {"card_id": card_id}},
            reply_to=message.message_id,
            uuid=stream_uuid(message.message_id, self._turn),
            in_thread=message.in_thread,
        )
        self.first_shown_at = time.monotonic()
        self._shown = text

    async def _create(self, text: str) -> str:
        await self._paced()
        body = {"type": "card_json", "data": json.dumps(streaming_card(text), ensure_ascii=False)}
        data = await self._client.call("POST", CARDS_PATH, json=body)
        card_id = data.get("card_id")
        if not isinstance(card_id, str) or not card_id:
            raise FeishuError("bad_response", "CardKit answered without a card_id")
        return card_id

    async def _put(self, text: str) -> None:
        if text == self._shown:
            return
        await self._paced()
        await self._client.call(
            "PUT",
            f"{CARDS_PATH}/{self.card_id}/elements/{ELEMENT_ID}/content",
            json={
                "content": inert_markdown(text),
                "sequence": self._next_sequence(),
                "uuid": uuid_lib.uuid4().hex,
            },
        )
        self._shown = text
        self.updates += 1

    async def _close(self) -> None:
        await self._set_streaming(False)

    async def _set_streaming(self, on: bool) -> None:
        await self._paced()
        await self._client.call(
            "PATCH",
            f"{CARDS_PATH}/{self.card_id}/settings",
            json={
                "settings": json.dumps({"config": {"streaming_mode": on}}),
                "sequence": self._next_sequence(),
                "uuid": uuid_lib.uuid4().hex,
            },
        )


def _is_refusal(exc: Exception) -> bool:
    if isinstance(exc, OutboundError):
        exc = exc.__cause__ if isinstance(exc.__cause__, FeishuError) else exc
    if not isinstance(exc, FeishuError) or exc.kind != "api":
        return False
    status = exc.http_status or 400
    return status < 500 and status != 429 and exc.feishu_code not in RATE_LIMIT_CODES


class CardStreams:
    """Opens a ``CardStream`` per answer, remembers which connectors CardKit refused."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clients: FeishuApps,
        outbound: Outbound,
        *,
        first_update_after: float = 0.3,
        min_interval: float = 0.15,
    ) -> None:
        self._sessions = sessions
        self._clients = clients
        self.outbound = outbound
        self._first_after = first_update_after
        self._interval = min_interval
        self._refused: set[int] = set()
        self._app_paces: dict[int, Pace] = {}

    def open(self, message: InboundMessage, *, turn: int = 1) -> CardStream | None:
        """A stream for this answer (``turn``: the agent loop's model turn; each has its own card), or None
        (no client, or CardKit refused for this connector)."""
        if message.connector_id in self._refused:
            return None
        client: OpenApiClient | None = self._clients.openapi(message.connector_id)
        if client is None:
            return None
        app_pace = self._app_paces.setdefault(message.connector_id, Pace(APP_CARDKIT_INTERVAL))
        return CardStream(
            self,
            message,
            client,
            first_update_after=self._first_after,
            min_interval=self._interval,
            app_pace=app_pace,
            turn=turn,
        )

    async def refused(self, connector_id: int, exc: Exception) -> None:
        """This reply goes as text. Feishu *refusing* CardKit (a 4xx code: no scope, not allowed) also
        turns it off for the connector until restart; a 5xx or a network error does not."""
        if not _is_refusal(exc):
            log.warning("stream_card_failed connector_id=%s error=%s", connector_id, exc)
            return
        if connector_id in self._refused:
            return
        self._refused.add(connector_id)
        detail = exc.detail() if isinstance(exc, FeishuError) else {"error": str(exc)[:200]}
        await record_now(
            self._sessions,
            connector_id=connector_id,
            action=LogAction.STREAMING_FALLBACK,
            level=LogLevel.WARN,
            reason="CardKit refused: replies are sent as text",
            **detail,
        )

    async def card_for(
        self, message: InboundMessage, client: OpenApiClient, create: Callable[[], Any], *, turn: int = 1
    ) -> tuple[str, float, bool]:
        """The card entity of this message's answer: the one a first attempt made, or a new one (kept
        before it is sent). Returns it with its creation time (epoch seconds) and whether it is reused."""
        async with self._sessions() as session:
            row = await session.scalar(
                select(StreamedReply).where(
                    StreamedReply.connector_id == message.connector_id,
                    StreamedReply.message_id == card_key(message.message_id, turn),
                )
            )
            if row is not None:
                return row.card_id, row.created_at.timestamp(), True
        card_id: str = await create()
        async with self._sessions() as session:
            dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            now = utcnow()
            await session.execute(
                dialect_insert(StreamedReply)
                .values(
                    connector_id=message.connector_id,
                    message_id=card_key(message.message_id, turn),
                    card_id=card_id,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["connector_id", "message_id"])
            )
            await session.commit()
            return card_id, now.timestamp(), False
