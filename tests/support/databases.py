"""The two databases every storage test runs on: a SQLite file and a schema of its own in PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    backend: str
    url: str  # SQLAlchemy URL
    schema: str  # PostgreSQL only


@asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    if backend == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'echocenter.db'}", "")
        return
    schema = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        url = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
        yield Database("postgresql", url, schema)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@asynccontextmanager
async def migrated_sessions(database: Database) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on ``database`` with every migration applied; the engine is closed afterwards."""
    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
