"""A migrated database (a real SQLite file and a real PostgreSQL schema) with one enabled connector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from echocenter.db.engine import make_engine
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import FeishuConnector, InboundMessage
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


async def inbox_rows(engine: AsyncEngine) -> list[InboundMessage]:
    async with AsyncSession(engine) as session:
        return list(await session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
