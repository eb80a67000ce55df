"""Within Feishu's quotas no reply is lost: 60 people writing to the bot at once in one chat, against the
emulator with its quotas on, get 60 replies, in the order the outbox wrote them, with at most 3 refusals —
also across a restart in the middle of the burst, and with two instances on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from echocenter.connectors import api as connectors_api
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.models import Approval, OutboxMessage
from echocenter.settings import Settings
from tests.conftest import Server
from tests.e2e.harness import (
    Stack,
    asked,
    create_verified_connector,
    e2e_settings,
    serve_echocenter,
    story_with_agent,
)
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.waiting import eventually

PEOPLE = 60
CHAT = "oc_crowd"


async def crowd(emu: RunningEmulator) -> list[str]:
    people = [(await emu.control("POST", "/users", {"name": f"P{i}"}))["open_id"] for i in range(PEOPLE)]
    await emu.control(
        "POST", "/chats", {"name": "Crowd", "chat_type": "group", "members": people, "chat_id": CHAT}
    )
    return people


async def all_write_at_once(emu: RunningEmulator, people: list[str]) -> list[str]:
    async def write(person: str) -> str:
        body = {"chat_id": CHAT, "sender": person, "text": "help", "mention_bot": True}
        sent: dict[str, Any] = await emu.control("POST", "/messages", body)
        return str(sent["message_id"])

    return list(await asyncio.gather(*(write(p) for p in people)))


async def bot_replies(emu: RunningEmulator) -> list[dict[str, Any]]:
    items = (await emu.control("GET", f"/chats/{CHAT}/messages"))["items"]
    return [m for m in items if m["sender_type"] == "app"]


async def all_answered(emu: RunningEmulator, asked: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        replies = await bot_replies(emu)
        return replies if {m["parent_id"] for m in replies} >= set(asked) else None

    return await eventually(done, timeout=timeout, interval=0.2)


async def sent_logs(server: Server, connector_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {
            "action": "ws_outbound",
            "limit": 200,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (
            await server.client.get(f"/api/integrations/feishu/{connector_id}/logs", params=params)
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return [e for e in items if e["detail"]["ok"] is True]


def assert_each_answered_once_in_outbox_order(
    replies: list[dict[str, Any]], logs: list[dict[str, Any]]
) -> None:
    per_parent = Counter(m["parent_id"] for m in replies)
    assert set(per_parent.values()) == {1}, "a reply was sent twice"
    outbox_id = {e["detail"]["message_id"]: e["detail"]["outbox_id"] for e in logs}
    order = [outbox_id[m["message_id"]] for m in replies]  # the chat's order, as people saw it
    assert order == sorted(order)


@pytest.fixture
def settings(database: Database, tmp_path: Path, emu: RunningEmulator) -> Settings:
    return e2e_settings(database, tmp_path, emu.url)


@pytest.fixture
async def people(emu: RunningEmulator) -> list[str]:
    """60 people in one group chat with the bot."""
    return await crowd(emu)


async def assert_burst_answered(
    emu: RunningEmulator, server: Server, connector_id: int, asked: list[str]
) -> None:
    """Every message answered exactly once, in the outbox's order, with at most 3 refusals from Feishu."""
    replies = await all_answered(emu, asked)
    assert len(replies) == PEOPLE
    assert (await emu.control("GET", "/quotas"))["refused_total"] <= 3
    assert_each_answered_once_in_outbox_order(replies, await sent_logs(server, connector_id))


@asynccontextmanager
async def echocenter(settings: Settings) -> AsyncIterator[Server]:
    async with serve_echocenter(settings, None) as server:
        yield server


async def outbox_rows(settings: Settings) -> int:
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with make_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
    finally:
        await engine.dispose()


async def test_sixty_people_at_once_in_one_chat_all_get_their_reply_within_the_quotas(
    settings: Settings, emu: RunningEmulator, people: list[str]
) -> None:
    async with echocenter(settings) as server:
        connector_id = await connector_on(server, emu)
        asked = await all_write_at_once(emu, people)
        await assert_burst_answered(emu, server, connector_id, asked)


async def test_replies_survive_a_restart_in_the_middle_of_the_burst(
    settings: Settings, emu: RunningEmulator, people: list[str]
) -> None:
    async with echocenter(settings) as server:
        connector_id = await connector_on(server, emu)
        asked = await all_write_at_once(emu, people)

        async def all_written_some_sent() -> bool:
            return await outbox_rows(settings) == PEOPLE and len(await bot_replies(emu)) >= 5

        await eventually(all_written_some_sent, timeout=30)
    before = len(await bot_replies(emu))
    assert before < PEOPLE, "the burst was over before the restart: nothing was tested"

    async with echocenter(settings) as server:
        await assert_burst_answered(emu, server, connector_id, asked)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_instances_share_the_quota_and_never_send_twice(
    settings: Settings, emu: RunningEmulator, people: list[str]
) -> None:
    async with echocenter(settings) as first:
        connector_id = await connector_on(first, emu)
        async with echocenter(settings):
            await eventually(lambda: _connected(emu, 2))
            asked = await all_write_at_once(emu, people)
            await assert_burst_answered(emu, first, connector_id, asked)
            deliveries = (await emu.control("GET", "/deliveries"))["items"]
            served_by = {d["ack_device_id"] for d in deliveries if d["acked"]}
            assert len(served_by) == 2  # both instances took messages (and wrote outbox rows)


async def connector_on(server: Server, emu: RunningEmulator) -> int:
    connector_id = await create_verified_connector(server, mention_required=True)
    await eventually(lambda: _connected(emu))
    return connector_id


async def _connected(emu: RunningEmulator, count: int = 1) -> bool:
    return len((await emu.control("GET", "/connections"))["items"]) >= count


async def test_a_card_sent_after_a_restart_is_still_updated(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    """The approval card's id is stored when the send returns it; when the card went out from the outbox
    after its requester was gone (a restart), the id is found by the card's uuid when next needed."""
    async with story_with_agent(database, tmp_path, emu) as story:
        _, card, approval = await asked(story)
        engine = make_engine(
            story.server.settings.resolved_database_url, schema=story.server.settings.database_schema
        )
        try:
            async with make_sessionmaker(engine)() as session:
                await session.execute(
                    update(Approval).where(Approval.id == approval["id"]).values(card_message_id=None)
                )
                await session.commit()
        finally:
            await engine.dispose()
        decided = await story.api.post(
            f"/api/approvals/{approval['id']}/decision", json={"decision": "reject", "reason": "not now"}
        )
        assert decided.status_code == 200 and decided.json()["decided"] is True

        async def card_updated() -> bool:
            stored = (await emu.control("GET", "/chats/oc_ops/messages"))["items"]
            now = next(m for m in stored if m["message_id"] == card["message_id"])
            return bool(now["updated"]) and "not now" in json.dumps(now["content"])

        await eventually(card_updated)
        assert (await story.approval(approval["id"]))["card_message_id"] == card["message_id"]


async def test_an_admin_test_message_is_answered_in_time_and_still_sent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Feishu refuses, the admin gets a 409 after the route's wait, and the outbox sends it later."""
    monkeypatch.setattr(connectors_api, "TEST_MESSAGE_WAIT_SECONDS", 0.3)
    await stack.emu.control("POST", "/faults", {"fail_next_sends": {"count": 3, "kind": "5xx"}})
    response = await stack.api.post(
        f"/api/integrations/feishu/{stack.connector_id}/test-message",
        json={"chat_id": "oc_ops", "text": "sent in the end"},
    )
    assert response.status_code == 409 and "stays in the outbox" in response.json()["error"]["message"]

    async def delivered() -> bool:
        items = (await stack.emu.control("GET", "/chats/oc_ops/messages"))["items"]
        return any(m["sender_type"] == "app" and m["content"] == {"text": "sent in the end"} for m in items)

    await eventually(delivered)
