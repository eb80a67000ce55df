"""Cluster building blocks on both databases: the once-per-fleet sweep lock, batched agent presence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.auth.passwords import Passwords
from echocenter.auth.service import ensure_initial_admin
from echocenter.cluster.bus import PostgresBus, make_bus
from echocenter.cluster.fleet_lock import lock_key, once_per_fleet
from echocenter.cluster.instances import InstanceRegistry
from echocenter.cluster.presence import PresenceBuffer, online_agents
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import Agent
from echocenter.db.types import utcnow
from tests.support.databases import Database, fresh_database
from tests.support.waiting import eventually


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database.url, schema=database.schema)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


async def test_a_sweep_runs_on_one_instance_at_a_time(engine: AsyncEngine, database: Database) -> None:
    # A second instance is a second engine on PostgreSQL; on SQLite there is one instance, one engine.
    other = make_engine(database.url, schema=database.schema) if database.backend == "postgresql" else engine
    try:
        async with once_per_fleet(engine, "retention", schema=database.schema) as first:
            async with once_per_fleet(other, "retention", schema=database.schema) as second:
                assert (first, second) == (True, False)
            async with once_per_fleet(other, "approval-sweep", schema=database.schema) as unrelated:
                assert unrelated
        async with once_per_fleet(other, "retention", schema=database.schema) as after:
            assert after
    finally:
        if other is not engine:
            await other.dispose()


def test_sweep_locks_of_different_schemas_do_not_collide() -> None:
    assert lock_key("t_one", "retention") != lock_key("t_two", "retention")


async def _agents(engine: AsyncEngine, count: int) -> list[int]:
    async with engine.begin() as conn:
        await conn.execute(
            insert(Agent),
            [{"name": f"a{i}", "token_hash": f"h{i}", "created_at": utcnow()} for i in range(count)],
        )
    return list(range(1, count + 1))


async def test_presence_is_written_in_a_few_statements_per_flush(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    ids = await _agents(engine, 300)
    registry = InstanceRegistry(sessions, instance_id="inst-a", timeout=5)
    await registry.beat()
    buffer = PresenceBuffer(sessions, instance_id="inst-a", flush_seconds=60)
    for agent_id in ids:
        buffer.connected(agent_id)
        buffer.heartbeat(agent_id)

    async with sessions() as session:
        assert await online_agents(session, timeout=timedelta(seconds=5)) == {}  # buffered, not written

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]).split()[0])

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await buffer.flush()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    writes = [s for s in statements if s.upper() in ("INSERT", "UPDATE", "DELETE")]
    assert len(writes) <= 4, statements  # one upsert, then one UPDATE per table: not one per agent

    async with sessions() as session:
        online = await online_agents(session, timeout=timedelta(seconds=5))
    assert len(online) == 300 and set(online.values()) == {"inst-a"}

    buffer.disconnected(ids[0])
    await buffer.flush()
    async with sessions() as session:
        assert "a0" not in await online_agents(session, timeout=timedelta(seconds=5))


async def test_agents_of_an_instance_that_stopped_beating_are_offline(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    await _agents(engine, 2)
    registry = InstanceRegistry(sessions, instance_id="inst-b", timeout=0.3)
    await registry.beat()
    buffer = PresenceBuffer(sessions, instance_id="inst-b", flush_seconds=60)
    buffer.connected(1)
    buffer.connected(2)
    await buffer.flush()
    async with sessions() as session:
        assert len(await online_agents(session, timeout=timedelta(seconds=0.3))) == 2

    async def released() -> bool:  # no more heartbeats: the rows stay, but they no longer count
        async with sessions() as session:
            return not await online_agents(session, timeout=timedelta(seconds=0.3))

    await eventually(released, timeout=5)


async def test_the_first_admin_is_created_once_when_instances_race(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    passwords = Passwords(memory_kib=1024, time_cost=1, max_concurrent=8)

    async def instance_starts() -> bool:
        async with sessions() as session:
            return await ensure_initial_admin(
                session, passwords=passwords, username="admin", password="pw-123456"
            )

    created = await asyncio.gather(*(instance_starts() for _ in range(4)))
    assert sorted(created) == [False, False, False, True]


async def test_notices_reach_the_instance_they_are_for(engine: AsyncEngine, database: Database) -> None:
    url, schema = database.url, database.schema
    mine = make_bus("inst-1", engine=engine, url=url, schema=schema)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_notice(payload: dict[str, Any]) -> None:
        await received.put(payload)

    mine.subscribe("connector", on_notice)
    await mine.start()
    # On PostgreSQL a second instance publishes; on SQLite there is only one (in-process).
    other = (
        make_bus("inst-2", engine=engine, url=url, schema=schema)
        if database.backend == "postgresql"
        else mine
    )
    try:
        await other.publish("connector", to="inst-3", id=6)  # for someone else: not delivered here
        await other.publish("connector", id=7)
        assert await asyncio.wait_for(received.get(), 5) == {"kind": "connector", "id": 7}
        await other.publish("connector", to="inst-1", id=8)
        assert (await asyncio.wait_for(received.get(), 5))["id"] == 8
        assert received.empty()
    finally:
        await mine.stop()


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Database]]:
    async with fresh_database("postgresql", tmp_path) as database:
        engine = make_engine(database.url, schema=database.schema)
        await upgrade_to_head(engine)
        yield engine, database
        await engine.dispose()


async def test_the_postgres_listener_comes_back_and_resyncs(postgres: tuple[AsyncEngine, Database]) -> None:
    engine, database = postgres  # LISTEN/NOTIFY is PostgreSQL's
    bus = make_bus("inst-r", engine=engine, url=database.url, schema=database.schema)
    assert isinstance(bus, PostgresBus)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    resyncs: list[int] = []

    async def on_notice(payload: dict[str, Any]) -> None:
        await received.put(payload)

    async def on_resync() -> None:
        resyncs.append(1)

    bus.subscribe("connector", on_notice)
    bus.on_resync(on_resync)
    await bus.start()
    try:
        async with engine.begin() as conn:  # the server drops the listener's connection
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": "echocenter-bus inst-r"},
            )

        async def resynced() -> bool:
            return bool(resyncs) and bus.listening.is_set()

        await eventually(resynced, timeout=10)
        await bus.publish("connector", id=9)
        assert await asyncio.wait_for(received.get(), 5) == {"kind": "connector", "id": 9}
    finally:
        await bus.stop()
