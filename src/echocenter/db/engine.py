"""The async engine and session factory, tuned per backend."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def make_engine(url: str, *, schema: str = "") -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        if schema:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"DATABASE_SCHEMA {schema!r} is not a plain lower-case identifier")
            connect_args["server_settings"] = {"search_path": schema}
        engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
    else:
        # SQLite has one writer at a time. Several pooled connections would contend for its lock and wait in
        # its busy handler (sleeps of up to 100 ms); one connection makes the work queue in the app instead.
        # The rule that follows: never hold a transaction open while awaiting another session.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
