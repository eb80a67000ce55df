"""An event is acknowledged only once it is stored: when the claim cannot be written, the long connection
sends no ack (so Feishu pushes the event again) and the HTTP callback answers 5xx (so Feishu retries)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text

from echocenter.db.engine import make_engine
from tests.e2e.harness import Stack
from tests.e2e.test_callback import TOKEN, encrypted, signed, use_callback
from tests.support.waiting import eventually


@asynccontextmanager
async def inbox_away(stack: Stack) -> AsyncIterator[None]:
    """The inbox table renamed away: every claim fails as it would with the database gone."""
    settings = stack.server.settings
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE inbound_messages RENAME TO inbound_messages_away"))
        try:
            yield
        finally:
            async with engine.begin() as conn:
                await conn.execute(text("ALTER TABLE inbound_messages_away RENAME TO inbound_messages"))
    finally:
        await engine.dispose()


async def _delivery(stack: Stack, event_id: str) -> dict[str, Any]:
    items = (await stack.emu.control("GET", "/deliveries"))["items"]
    [delivery] = [d for d in items if d["event_id"] == event_id]
    return delivery


async def test_an_event_that_cannot_be_stored_is_not_acked_and_comes_again(stack: Stack) -> None:
    async with inbox_away(stack):
        sent = await stack.deliver("keep me")

        async def pushed_again() -> bool:
            return stack.emu.world.counters["ws.redelivery"] >= 1

        await eventually(pushed_again)
        assert not (await _delivery(stack, sent["event_id"]))["acked"]
        assert stack.butler.received == []

    async def routed() -> bool:
        return any(m.message_id == sent["message_id"] for m in stack.butler.received)

    await eventually(routed)
    assert (await _delivery(stack, sent["event_id"]))["acked"]


def _message_event(message_id: str) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": secrets.token_hex(8), "event_type": "im.message.receive_v1", "token": TOKEN},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": "user"},
            "message": {
                "message_id": message_id,
                "chat_id": "oc_p2p_alice",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": "over http"}),
            },
        },
    }


async def test_the_http_callback_answers_only_once_the_message_is_stored(stack: Stack) -> None:
    url = await use_callback(stack)
    body = encrypted(_message_event("om_" + secrets.token_hex(8)))
    async with httpx.AsyncClient(timeout=10) as http:
        async with inbox_away(stack):
            refused = await http.post(url, content=body, headers=signed(body))
        assert refused.status_code >= 500  # Feishu delivers it again
        assert "error" in refused.json()
        accepted = await http.post(url, content=body, headers=signed(body, nonce="n2"))
    assert accepted.status_code == 200, accepted.text

    async def routed() -> bool:
        return [m.text for m in stack.butler.received] == ["over http"]

    await eventually(routed)
