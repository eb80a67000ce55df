from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.types import utcnow
from echocenter.integration_logs import service as logs
from tests.conftest import make_settings, running_server
from tests.support.databases import Database
from tests.support.waiting import eventually


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


async def test_audit_entries_have_their_own_cap(database: Database, tmp_path: Path) -> None:
    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            logs.record(session, connector_id=None, action="create_connector", n=0)
            logs.record(session, connector_id=None, action="update_connector", n=1)
            for i in range(150):
                logs.record(session, connector_id=None, action="callback_rejected", n=i)
            logs.record(session, connector_id=None, action="ws_auth_card_decision", n=2)
            await session.commit()
        async with sessions() as session:
            removed = await logs.prune(session, max_age=timedelta(days=30), max_rows=100, max_audit_rows=2)
            kept = (await logs.page(session, connector_id=None, limit=200)).items
    finally:
        await engine.dispose()
    assert removed == 50 + 1  # the oldest noise beyond 100, and the oldest audit entry beyond 2
    audit = [e.action for e in kept if e.action != "callback_rejected"]
    assert audit == ["ws_auth_card_decision", "update_connector"]
    assert len(kept) - len(audit) == 100


async def test_a_flood_of_bad_callbacks_does_not_evict_the_audit_trail(
    database: Database, tmp_path: Path
) -> None:
    # Throttling off (interval 0), so every refusal is a row: retention alone must protect the audit.
    settings = make_settings(
        database,
        tmp_path,
        log_retention_max_rows=100,
        log_retention_sweep_seconds=1,
        feishu_callback_reject_log_seconds=0,
    )
    async with running_server(settings) as server:
        created = await server.client.post("/api/integrations/feishu", json={"connector_name": "Audited"})
        connector_id = created.json()["id"]
        patched = await server.client.patch(
            f"/api/integrations/feishu/{connector_id}", json={"prefix_command": "/x"}
        )
        assert patched.status_code == 200
        url = f"{server.url}/api/integrations/feishu/callback/{connector_id}"
        async with httpx.AsyncClient() as http:
            for _ in range(150):
                assert (await http.post(url, json={"type": "url_verification"})).status_code == 403

        async def entries() -> list[dict[str, Any]]:
            response = await server.client.get(
                f"/api/integrations/feishu/{connector_id}/logs", params={"limit": 200}
            )
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        async def swept() -> list[dict[str, Any]] | None:
            items = await entries()
            return items if sum(e["action"] == "callback_rejected" for e in items) <= 100 else None

        kept = {e["action"] for e in await eventually(swept)}
    assert {"create_connector", "update_connector"} <= kept
