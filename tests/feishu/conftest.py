"""A migrated database with one enabled connector, and message events as Feishu sends them."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from echocenter.db.engine import make_engine
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import FeishuConnector, InboundMessage
from echocenter.feishu.events import MessageEvent, parse_event
from tests.support.databases import Database


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database.url, schema=database.schema)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connector_id(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        row = await conn.execute(
            insert(FeishuConnector)
            .values(connector_name="test", enabled=True, prefix_command="", rate_limit_per_minute=5)
            .returning(FeishuConnector.id)
        )
        return int(row.scalar_one())


def dm(text: str = "hello", *, sender: str = "ou_alice", message_id: str | None = None) -> MessageEvent:
    """A direct message, as ``im.message.receive_v1`` carries it."""
    payload: dict[str, Any] = {
        "schema": "2.0",
        "header": {
            "event_id": secrets.token_hex(8),
            "event_type": "im.message.receive_v1",
            "app_id": "cli_x",
        },
        "event": {
            "sender": {
                "sender_id": {"open_id": sender, "user_id": "", "union_id": ""},
                "sender_type": "user",
            },
            "message": {
                "message_id": message_id or "om_" + secrets.token_hex(8),
                "chat_id": "oc_dm_" + sender,
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
                "create_time": "0",
            },
        },
    }
    event = parse_event(payload)
    assert isinstance(event, MessageEvent)
    return event


async def inbox_rows(engine: AsyncEngine) -> list[InboundMessage]:
    async with AsyncSession(engine) as session:
        return list(await session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
