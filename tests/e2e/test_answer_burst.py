"""A burst from one person in one chat, answered by the real Butler whose writes are batched: every message
answered once, the replies in the order the messages were written, each turn stored once and in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from echocenter.db.engine import make_engine
from echocenter.db.models import ConversationTurn, InboundStatus
from echocenter.db.models import InboundMessage as InboundRow
from tests.e2e.harness import Stack
from tests.support.waiting import eventually

BURST = 40


async def test_a_burst_is_answered_once_each_in_order_with_its_turns_in_order(story: Stack) -> None:
    words = [f"word{i:02d}" for i in range(BURST)]
    ids = [await story.say(w) for w in words]  # one after another: this is the chat's order
    settings = story.server.settings
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:

        async def all_answered() -> bool:
            async with engine.connect() as conn:
                statuses = (
                    await conn.execute(select(InboundRow.status).where(InboundRow.message_id.in_(ids)))
                ).scalars()
                return [s for s in statuses if s == InboundStatus.ANSWERED.value] == [
                    InboundStatus.ANSWERED.value
                ] * BURST

        await eventually(all_answered, timeout=60)
        replies = [m for m in await story.bot_messages() if m["parent_id"] in ids]
        assert [m["parent_id"] for m in replies] == ids  # one each, in the order they were written
        for reply, word in zip(replies, words, strict=True):
            assert word in reply["content"]["text"]

        async with engine.connect() as conn:
            turns = (
                await conn.execute(
                    select(
                        ConversationTurn.turn_key, ConversationTurn.role, ConversationTurn.content
                    ).order_by(ConversationTurn.id)
                )
            ).all()
    finally:
        await engine.dispose()
    keys = [t.turn_key for t in turns]
    assert len(keys) == len(set(keys)) == 2 * BURST  # each stored once
    user = [t for t in turns if t.role == "user"]
    assert [t.content for t in user] == [f"word{i:02d}" for i in range(BURST)]  # in order
    position: dict[Any, int] = {key: i for i, key in enumerate(keys)}
    replies_in_order = [position[f"reply:{i}"] for i in ids]
    assert replies_in_order == sorted(replies_in_order)  # the replies' turns in the messages' order
    assert all(position[f"user:{i}"] < position[f"reply:{i}"] for i in ids)  # each after its question
