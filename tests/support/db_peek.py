"""Read rows the server wrote, through a connection of the test's own (the server keeps its own engine)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from echocenter.db.engine import make_engine
from echocenter.settings import Settings


async def fetch_all(settings: Settings, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()
