"""The two databases every storage test runs on: a SQLite file and a schema of its own in PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

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
