from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.types import utcnow
from echocenter.integration_logs import service as logs
from tests.support.databases import Database


async def test_prune_drops_old_entries_and_caps_the_count(database: Database, tmp_path: Path) -> None:
    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        now = utcnow()
        async with sessions() as session:
            for age_days, n in ((40, 3), (10, 5), (0, 4)):
                for i in range(n):
                    entry = logs.record(session, connector_id=None, action="ws_routed", n=i)
                    entry.created_at = now - timedelta(days=age_days)
            await session.commit()
        async with sessions() as session:
            removed = await logs.prune(session, max_age=timedelta(days=30), max_rows=6, now=now)
            assert removed == 3 + 3  # three too old, then all but the newest six
            assert await logs.count(session) == 6
            remaining = await logs.page(session, connector_id=None, limit=10)
    finally:
        await engine.dispose()
    # The newest six survive: the four of today and the last two of ten days ago.
    kept = [(round((now - e.created_at).total_seconds() / 86400), e.detail["n"]) for e in remaining.items]
    assert kept == [(0, 3), (0, 2), (0, 1), (0, 0), (10, 4), (10, 3)]


async def test_old_login_failure_counters_are_forgotten(database: Database, tmp_path: Path) -> None:
    from echocenter.auth.service import prune_login_attempts
    from echocenter.db.models import LoginAttempt

    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        now = utcnow()
        async with sessions() as session:
            session.add_all(
                [
                    LoginAttempt(key="old", failures=3, last_failure_at=now - timedelta(days=2)),
                    LoginAttempt(key="recent", failures=3, last_failure_at=now - timedelta(minutes=5)),
                    LoginAttempt(
                        key="old-but-locked",
                        failures=9,
                        last_failure_at=now - timedelta(days=2),
                        locked_until=now + timedelta(hours=1),
                    ),
                ]
            )
            await session.commit()
        async with sessions() as session:
            assert await prune_login_attempts(session) == 1
            from sqlalchemy import select

            left = sorted(await session.scalars(select(LoginAttempt.key)))
    finally:
        await engine.dispose()
    assert left == ["old-but-locked", "recent"]
