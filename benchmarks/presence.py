"""What agent presence costs the database: 20,000 agents connect, then send a heartbeat each, written by the
presence buffer (cluster/presence.py) in batched flushes. Prints the time and statement count per flush, on
a temporary SQLite file and (if reachable) a temporary PostgreSQL schema.

Usage: python benchmarks/presence.py [AGENTS]   (TEST_POSTGRES_URL as for the tests)"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.cluster.instances import InstanceRegistry
from echocenter.cluster.presence import PresenceBuffer
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import Agent
from echocenter.db.types import utcnow

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def measure(label: str, engine: AsyncEngine, agents: int) -> None:
    await upgrade_to_head(engine)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Agent),
            [{"name": f"agent-{i}", "token_hash": f"h{i}", "created_at": utcnow()} for i in range(agents)],
        )
    sessions = make_sessionmaker(engine)
    await InstanceRegistry(sessions, instance_id="bench", timeout=20).beat()
    buffer = PresenceBuffer(sessions, instance_id="bench", flush_seconds=2)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)

    async def flush(what: str) -> None:
        nonlocal statements
        statements = 0
        started = time.perf_counter()
        await buffer.flush()
        took = (time.perf_counter() - started) * 1000
        print(f"{label:10} {what:28} {took:8.1f} ms  {statements:3d} statements")

    for agent_id in range(1, agents + 1):
        buffer.connected(agent_id)
    await flush(f"{agents} connect")
    for round_ in range(3):
        for agent_id in range(1, agents + 1):
            buffer.heartbeat(agent_id)
        await flush(f"{agents} heartbeats #{round_ + 1}")


async def main(agents: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await measure("sqlite", engine, agents)
        finally:
            await engine.dispose()
    schema = "bench_" + secrets.token_hex(4)
    try:
        conn = await asyncpg.connect(POSTGRES_URL)
    except OSError:
        print("postgresql: not reachable, skipped")
        return
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        url = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = make_engine(url, schema=schema)
        try:
            await measure("postgresql", engine, agents)
        finally:
            await engine.dispose()
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
