"""Sweeps that would repeat work (retention, approval expiry and recovery) run on one instance at a time:
a PostgreSQL advisory lock taken with ``pg_try_advisory_lock`` (whoever does not get it skips this round),
an asyncio lock on SQLite (one instance)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_NAMESPACE = 0x4563  # "Ec": keeps our keys apart from other applications' advisory locks
_local: dict[str, asyncio.Lock] = {}


def lock_key(schema: str, name: str) -> int:
    """One bigint per (schema, sweep): instances of other schemas in the same database do not collide."""
    return (_NAMESPACE << 32) | zlib.crc32(f"{schema}:{name}".encode())


@asynccontextmanager
async def once_per_fleet(engine: AsyncEngine, name: str, *, schema: str = "") -> AsyncIterator[bool]:
    """Yield True when this instance holds the sweep's lock; False: another instance is running it."""
    if engine.dialect.name != "postgresql":
        lock = _local.setdefault(f"{id(engine)}:{name}", asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
        return
    key = lock_key(schema, name)
    async with engine.connect() as conn:  # the lock lives as long as this session
        got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
