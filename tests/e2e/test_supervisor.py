"""The connection supervisor on one instance: combined status, slow reconcile, unknown connectors, and
credentials read again from the database when Feishu refuses them."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from echocenter.db.engine import make_engine
from echocenter.feishu.openapi import FeishuError, OpenApiClient
from echocenter.secretbox import SecretBox
from tests.conftest import Server
from tests.e2e.harness import Stack, create_verified_connector, e2e_settings, serve_echocenter
from tests.support.databases import Database
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.recording_butler import RecordingButler
from tests.support.waiting import eventually


async def _connections(emu: RunningEmulator) -> int:
    items = (await emu.control("GET", "/connections"))["items"]
    return sum(1 for c in items if c["app_id"] == APP_ID)


async def _sql(server: Server, statement: str, **params: Any) -> list[Any]:
    """Change the database behind the service's back (as another instance whose notice was lost would)."""
    engine = make_engine(server.settings.resolved_database_url, schema=server.settings.database_schema)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_one_instance_reports_its_own_connection(stack: Stack) -> None:
    connector = await stack.connector()
    assert connector["status"] == "connected"
    assert connector["status_summary"] == "connected on 1 of 1 instance"
    assert [i["state"] for i in connector["instances"]] == ["connected"]
    assert connector["instances"][0]["instance_id"] == stack.server.settings.resolved_instance_id


async def test_an_event_for_a_deleted_connector_is_logged_and_its_connection_closed(stack: Stack) -> None:
    await _sql(stack.server, "DELETE FROM feishu_connectors WHERE id = :id", id=stack.connector_id)
    await stack.say("anyone there?")

    async def logged() -> list[Any]:
        return await _sql(
            stack.server, "SELECT detail FROM integration_logs WHERE action = 'unknown_connector'"
        )

    rows = await eventually(logged)
    detail = rows[0][0] if isinstance(rows[0][0], dict) else json.loads(rows[0][0])
    assert detail["unknown_connector_id"] == stack.connector_id

    async def closed() -> bool:
        return await _connections(stack.emu) == 0

    await eventually(closed, timeout=3)


@asynccontextmanager
async def connected_stack(
    database: Database, tmp_path: Path, emu: RunningEmulator, **overrides: Any
) -> AsyncIterator[Stack]:
    butler = RecordingButler()
    async with serve_echocenter(e2e_settings(database, tmp_path, emu.url, **overrides), butler) as server:
        connector_id = await create_verified_connector(server)
        stack = Stack(server, emu, connector_id, butler)
        await stack.wait_connected()
        yield stack


@pytest.fixture
async def quick_reconcile(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    async with connected_stack(database, tmp_path, emu, connector_reconcile_seconds=0.5) as stack:
        yield stack


@pytest.fixture
async def slow_retries(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    """A refused connection waits 30 s here: only reloading the credentials brings it back sooner."""
    async with connected_stack(database, tmp_path, emu, feishu_ws_backoff_cap=30) as stack:
        yield stack


async def test_a_change_nobody_announced_is_caught_by_the_slow_reconcile(quick_reconcile: Stack) -> None:
    stack = quick_reconcile
    assert await _connections(stack.emu) == 1
    await _sql(stack.server, "DELETE FROM feishu_connectors WHERE id = :id", id=stack.connector_id)

    async def closed() -> bool:
        return await _connections(stack.emu) == 0

    await eventually(closed, timeout=5)


async def test_a_refused_discovery_reloads_the_credentials_from_the_database(slow_retries: Stack) -> None:
    stack = slow_retries
    # Rotated at Feishu and stored by another instance whose notice never arrived (no updated_at either).
    rotated = "rotated-" + os.urandom(8).hex()
    stack.emu.world.apps[APP_ID].app_secret = rotated
    sealed = SecretBox(stack.server.settings.secrets_key).encrypt(rotated)
    await _sql(
        stack.server,
        "UPDATE feishu_connectors SET app_secret_enc = :sealed WHERE id = :id",
        sealed=sealed,
        id=stack.connector_id,
    )
    await stack.emu.emulator.hub.drop_all()  # reconnecting with the old secret: discovery refuses it

    async def back() -> bool:
        return await _connections(stack.emu) == 1

    await eventually(back, timeout=8)
    refused = [e for e in await stack.logs(action="ws_client_error") if e["detail"].get("fatal")]
    assert refused, "the old secret was never refused: the test proves nothing"


async def test_a_refused_secret_is_read_again_from_the_database(emu: RunningEmulator) -> None:
    reloads: list[int] = []

    async def stored() -> tuple[str, str]:
        reloads.append(1)
        return APP_ID, APP_SECRET  # rotated on another instance: the database has the new one

    async with httpx.AsyncClient() as http:
        client = OpenApiClient(
            http, base_url=emu.url, app_id=APP_ID, app_secret="the-old-secret", reload_credentials=stored
        )
        assert await client.bot_open_id()
        assert await client.bot_open_id()
    assert len(reloads) == 1


async def test_a_refusal_that_stands_is_not_retried_for_every_send(emu: RunningEmulator) -> None:
    async def stored() -> tuple[str, str]:
        return APP_ID, "the-old-secret"  # nothing new in the database either

    async with httpx.AsyncClient() as http:
        client = OpenApiClient(
            http, base_url=emu.url, app_id=APP_ID, app_secret="the-old-secret", reload_credentials=stored
        )
        with pytest.raises(FeishuError) as first:
            await client.bot_open_id()
        assert first.value.feishu_code == 10014
        requests = client.requests_sent
        for _ in range(5):
            with pytest.raises(FeishuError):
                await client.bot_open_id()
        assert client.requests_sent == requests  # refused at once, no token request per send
