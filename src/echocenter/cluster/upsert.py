"""INSERT … ON CONFLICT DO UPDATE for both backends (SQLite and PostgreSQL share the syntax)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def upsert(
    db: AsyncSession | AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows`` (one statement, executemany), updating ``update`` columns where ``keys`` exist."""
    if not rows:
        return
    dialect = (db.get_bind() if isinstance(db, AsyncSession) else db).dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.on_conflict_do_update(
        index_elements=list(keys), set_={name: insert.excluded[name] for name in update}
    )
    await db.execute(statement, list(rows))
