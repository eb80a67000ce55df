"""A message driven again (its lease ran out after a crash) is answered as if once: the same reply (Feishu
``uuid``), no second conversation turn, no second approval or card for a command."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.db.engine import make_engine
from echocenter.db.models import ConversationTurn, InboundStatus
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.types import utcnow
from tests.e2e.harness import Stack, asked
from tests.support.waiting import eventually


async def _drive_again(engine: AsyncEngine, message_id: str, status: InboundStatus) -> None:
    """What a crash leaves: the message back in an unfinished state, its lease run out."""
    async with engine.begin() as conn:
        await conn.execute(
            update(InboundRow)
            .where(InboundRow.message_id == message_id)
            .values(status=status.value, lease_until=utcnow(), lease_owner="a-dead-instance")
        )


async def _answered_again(engine: AsyncEngine, message_id: str) -> bool:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(InboundRow.status, InboundRow.attempts).where(InboundRow.message_id == message_id)
            )
        ).one()
    return row.status == InboundStatus.ANSWERED.value and row.attempts >= 2


async def _bot_replies(story: Stack, message_id: str) -> list[dict[str, Any]]:
    items = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
    return [m for m in items if m["sender_type"] == "app" and m["parent_id"] == message_id]


async def _turns(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(ConversationTurn))).scalar_one())


async def test_a_redriven_command_asks_for_approval_once(story: Stack) -> None:
    settings = story.server.settings
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        message_id, _card, approval = await asked(story)

        async def finished() -> bool:
            return await _answered_again(engine, message_id) or await _is_answered(engine, message_id)

        await eventually(finished)
        turns = await _turns(engine)
        for status in (InboundStatus.RECEIVED, InboundStatus.ROUTED):
            await _drive_again(engine, message_id, status)
            await eventually(lambda: _answered_again(engine, message_id))
        replies = await _bot_replies(story, message_id)
        assert sorted(m["msg_type"] for m in replies) == ["interactive", "text"]  # one answer, one card
        assert [a["id"] for a in await story.approvals()] == [approval["id"]]
        assert await _turns(engine) == turns  # the user's turn, the reply, the note: none added again
    finally:
        await engine.dispose()


async def _is_answered(engine: AsyncEngine, message_id: str) -> bool:
    async with engine.connect() as conn:
        status = (
            await conn.execute(select(InboundRow.status).where(InboundRow.message_id == message_id))
        ).scalar_one()
    return bool(status == InboundStatus.ANSWERED.value)
