"""The approval timeline's hash chain on both databases: concurrent appends from two instances keep one
chain, a forked chain cannot be stored, and `echocenter audit verify` names the first broken link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.approvals import timeline
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import ApprovalEvent
from tests.api.test_admin_cli import _cli, cli_env
from tests.conftest import make_settings
from tests.support.databases import Database


@pytest.fixture
async def two_instances(database: Database) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], ...]]:
    """Two engines on one database, as two EchoCenter instances would hold."""
    engines = [make_engine(database.url, schema=database.schema) for _ in range(2)]
    try:
        await upgrade_to_head(engines[0])
        yield tuple(make_sessionmaker(e) for e in engines)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_concurrent_appends_from_two_instances_keep_one_chain(
    two_instances: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    first, second = two_instances
    await asyncio.gather(
        *(
            timeline.append(sessions, approval_id=i % 3 + 1, kind="vote", actor=f"ou_{i}", n=i)
            for i in range(24)
            for sessions in ([first] if i % 2 else [second])
        )
    )
    async with first() as session:
        result = await timeline.verify(session)
        rows = list(await session.scalars(select(ApprovalEvent).order_by(ApprovalEvent.id)))
    assert result.ok and result.checked == 24
    assert len({r.prev_hash for r in rows}) == 24 and rows[0].prev_hash == timeline.GENESIS


async def test_a_forked_chain_cannot_be_stored(
    two_instances: tuple[async_sessionmaker[AsyncSession], ...],
) -> None:
    sessions = two_instances[0]
    head = await timeline.append(sessions, approval_id=1, kind="requested", actor="ou_alice")
    async with sessions() as session:
        fork = ApprovalEvent(
            approval_id=2,
            kind="requested",
            actor="ou_bob",
            detail={},
            created_at=head.created_at,
            prev_hash=head.prev_hash,
        )
        fork.hash = timeline.row_hash(fork)
        session.add(fork)
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_a_deleted_row_is_named_by_the_api_check_and_the_cli(
    database: Database, tmp_path: Path
) -> None:
    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        events = [
            await timeline.append(sessions, approval_id=7, kind=kind, actor="ou_alice")
            for kind in ("requested", "vote", "decided")
        ]
        settings = make_settings(database, tmp_path)
        env = cli_env(database, tmp_path, settings.jwt_secret)
        code, out = await _cli(["audit", "verify"], env)
        assert code == 0 and "ok: 3 timeline rows" in out, out
        async with sessions() as session:
            await session.execute(delete(ApprovalEvent).where(ApprovalEvent.id == events[1].id))
            await session.commit()
            result = await timeline.verify(session)
        assert (result.ok, result.broken_at, result.approval_id) == (False, events[2].id, 7)
        assert "missing" in (result.problem or "")
        code, out = await _cli(["audit", "verify", "--json"], env)
        assert code == 1 and f'"broken_at": {events[2].id}' in out, out
    finally:
        await engine.dispose()
