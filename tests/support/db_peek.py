"""Read rows the server wrote, through a connection of the test's own (the server keeps its own engine)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, text

from echocenter.db.engine import make_engine
from echocenter.settings import Settings


async def fetch_all(settings: Settings, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


async def execute_behind_the_service(settings: Settings, statement: Executable) -> None:
    """Change rows as someone with database access would, bypassing the service."""
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)
    finally:
        await engine.dispose()
