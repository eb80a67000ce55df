"""EchoCenter and the emulator side by side: a verified, enabled connector on the emulator's default app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from echocenter.app import create_app
from echocenter.settings import Settings
from tests.conftest import ADMIN_PASS, ADMIN_USER, Server, make_settings
from tests.support.databases import Database
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.live import serve
from tests.support.recording_butler import RecordingButler
from tests.support.waiting import eventually


@dataclass
class Stack:
    server: Server
    emu: RunningEmulator
    butler: RecordingButler
    connector_id: int

    @property
    def api(self) -> httpx.AsyncClient:
        return self.server.client

    async def logs(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.api.get(
            f"/api/integrations/feishu/{self.connector_id}/logs", params={"limit": 200, **params}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def connector(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get(f"/api/integrations/feishu/{self.connector_id}")).json()
        return body

    async def patch(self, **changes: Any) -> dict[str, Any]:
        response = await self.api.patch(f"/api/integrations/feishu/{self.connector_id}", json=changes)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def say(self, text: str = "hello", **extra: Any) -> dict[str, Any]:
        body = {"chat_id": "oc_ops", "sender": "ou_alice", "text": text, "mention_bot": True, **extra}
        result: dict[str, Any] = await self.emu.control("POST", "/messages", body)
        return result

    async def filtered_reasons(self) -> list[str]:
        return [e["detail"]["reason"] for e in await self.logs(action="ws_filtered")]

    async def wait_connected(self) -> dict[str, Any]:
        async def connected() -> dict[str, Any] | None:
            connector = await self.connector()
            return connector if connector["status"] == "connected" else None

        return await eventually(connected)


def e2e_settings(database: Database, tmp_path: Path, emu_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "feishu_base_url": emu_url,
        "feishu_ws_enabled": True,
        "feishu_ws_backoff_cap": 0.5,
        "feishu_http_timeout": 3.0,
    }
    values.update(overrides)
    return make_settings(database, tmp_path, **values)


@asynccontextmanager
async def serve_echocenter(settings: Settings, butler: RecordingButler | None) -> AsyncIterator[Server]:
    """EchoCenter on a real port; ``butler=None`` runs the real Butler service."""
    async with (
        serve(create_app(settings, butler=butler)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as c,
    ):
        server = Server(url=url, settings=settings, client=c)
        c.headers["Authorization"] = f"Bearer {await server.login(ADMIN_USER, ADMIN_PASS)}"
        yield server


async def create_verified_connector(server: Server, **settings: Any) -> int:
    body = {
        "connector_name": "Emulated",
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "approvers": ["ou_alice"],
        **settings,
    }
    created = await server.client.post("/api/integrations/feishu", json=body)
    assert created.status_code == 201, created.text
    connector_id: int = created.json()["id"]
    verified = await server.client.post(f"/api/integrations/feishu/{connector_id}/verify-callback")
    assert verified.json()["ok"], verified.text
    enabled = await server.client.patch(
        f"/api/integrations/feishu/{connector_id}/enable", json={"enabled": True}
    )
    assert enabled.status_code == 200
    return connector_id


@pytest.fixture
async def stack(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    butler = RecordingButler()
    async with serve_echocenter(e2e_settings(database, tmp_path, emu.url), butler) as server:
        connector_id = await create_verified_connector(server, prefix_command="", rate_limit_per_minute=100)
        stack = Stack(server, emu, butler, connector_id)
        await stack.wait_connected()
        yield stack
