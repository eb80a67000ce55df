"""Liveness and readiness, without authentication."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from echocenter.db.engine import make_engine
from tests.conftest import Server


async def test_ready_when_the_database_answers_and_migrations_are_current(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        response = await anonymous.get("/api/health/ready")
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ready", "checks": {}}
        live = (await anonymous.get("/api/health")).json()
        # Liveness also says whether connections are being accepted (issue 15: EMFILE back-off).
        assert live["status"] == "ok" and live["accepting_connections"] is True, live
        assert live["accept_failures"] == 0 and live["open_files_limit"] > 0, live


async def test_not_ready_while_the_schema_is_not_the_codes(server: Server) -> None:
    settings = server.settings
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.begin() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            await conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            response = await anonymous.get("/api/health/ready")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "unavailable" and "older" in body["checks"]["migrations"]
        assert body["error"]["code"] == "not_ready"
        assert (await server.client.get("/api/health")).status_code == 200  # alive, just not ready
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
        await engine.dispose()
