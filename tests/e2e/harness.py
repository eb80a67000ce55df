"""The one end-to-end harness: EchoCenter on a real port beside the emulator, a verified, enabled connector on
the emulator's default app, and what a test does and reads through them (``Stack``). The ``stack`` fixture
runs it with a recording Butler; ``story`` with the real Butler and a real agent (tests/e2e/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from echocenter.agents.example import run_agent
from echocenter.app import create_app
from echocenter.settings import Settings
from tests.conftest import ADMIN_PASS, ADMIN_USER, Server, make_settings
from tests.support.databases import Database
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.live import serve
from tests.support.recording_butler import RecordingButler
from tests.support.waiting import eventually

AGENT = "demo-agent"
SETTLED = ("EXECUTED", "FAILED", "REJECTED", "EXPIRED")


@dataclass
class Stack:
    server: Server
    emu: RunningEmulator
    connector_id: int
    butler: RecordingButler | None = None  # None: the real Butler answers

    @property
    def api(self) -> httpx.AsyncClient:
        return self.server.client

    # --- a person in Feishu ---------------------------------------------------------------------------
    async def deliver(self, text: str = "hello", **extra: Any) -> dict[str, Any]:
        """A person writes in a chat (by default Alice in oc_ops, mentioning the bot); the emulator's record
        of the event (message_id, event_id, …) comes back."""
        body = {"chat_id": "oc_ops", "sender": "ou_alice", "text": text, "mention_bot": True, **extra}
        result: dict[str, Any] = await self.emu.control("POST", "/messages", body)
        return result

    async def say(self, text: str = "hello", **extra: Any) -> str:
        """As ``deliver``; the message_id comes back."""
        message_id: str = (await self.deliver(text, **extra))["message_id"]
        return message_id

    async def click(self, card_id: str, button: str, operator: str = "ou_alice") -> dict[str, Any]:
        """Click as first shown: a collapsed card keeps its old buttons on a slow screen."""
        approval_id = next(a["id"] for a in await self.approvals() if a["card_message_id"] == card_id)
        value = {"approval_id": approval_id, "decision": "approve" if button == "Approve" else "reject"}
        result: dict[str, Any] = await self.emu.control(
            "POST", "/cards/click", {"message_id": card_id, "operator": operator, "value": value}
        )
        return result

    # --- what the bot sent ------------------------------------------------------------------------------
    async def bot_messages(self, chat_id: str = "oc_ops") -> list[dict[str, Any]]:
        items = (await self.emu.control("GET", f"/chats/{chat_id}/messages"))["items"]
        return [m for m in items if m["sender_type"] == "app"]

    async def reply_to(self, message_id: str, msg_type: str = "text") -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            for m in await self.bot_messages():
                if m["parent_id"] == message_id and m["msg_type"] == msg_type:
                    return m
            return None

        return await eventually(find)

    async def card_for(self, message_id: str) -> dict[str, Any]:
        return await self.reply_to(message_id, "interactive")

    async def result_messages(self) -> list[dict[str, Any]]:
        return [
            m
            for m in await self.bot_messages()
            if m["msg_type"] == "text" and m["content"]["text"].startswith(("✅", "❌"))
        ]

    # --- EchoCenter's API -----------------------------------------------------------------------------
    async def logs(self, action: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """The connector's integration log, newest first (``action`` narrows it to one action)."""
        query = {"limit": 200, **params} | ({"action": action} if action else {})
        response = await self.api.get(f"/api/integrations/feishu/{self.connector_id}/logs", params=query)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def filtered_reasons(self) -> list[str]:
        return [e["detail"]["reason"] for e in await self.logs("ws_filtered")]

    async def connector(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get(f"/api/integrations/feishu/{self.connector_id}")).json()
        return body

    async def patch(self, **changes: Any) -> dict[str, Any]:
        response = await self.api.patch(f"/api/integrations/feishu/{self.connector_id}", json=changes)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def patch_allowed(self, chat_ids: list[str]) -> None:
        await self.patch(allowed_chat_ids=chat_ids)

    async def wait_connected(self) -> dict[str, Any]:
        async def connected() -> dict[str, Any] | None:
            connector = await self.connector()
            return connector if connector["status"] == "connected" else None

        return await eventually(connected)

    async def approvals(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.api.get("/api/approvals", params=params)).json()
        return items

    async def approval(self, approval_id: int) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get(f"/api/approvals/{approval_id}")).json()
        return body

    async def settled(self, approval_id: int) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            approval = await self.approval(approval_id)
            return approval if approval["status"] in SETTLED else None

        return await eventually(done)


def e2e_settings(database: Database, tmp_path: Path, emu_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "feishu_base_url": emu_url,
        "feishu_ws_enabled": True,
        "feishu_ws_backoff_cap": 0.5,
        "feishu_http_timeout": 3.0,
    }
    values.update(overrides)
    return make_settings(database, tmp_path, **values)


def story_settings(database: Database, tmp_path: Path, emu: RunningEmulator, **overrides: Any) -> Settings:
    return e2e_settings(database, tmp_path, emu.url, approval_sweep_seconds=0.2, **overrides)


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


async def register_agent(api: httpx.AsyncClient, name: str = AGENT) -> str:
    created = await api.post("/api/agents", json={"name": name})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


@asynccontextmanager
async def agent_running(
    server: Server, token: str, allowed: tuple[str, ...] = ("uptime", "whoami")
) -> AsyncIterator[None]:
    url = server.url.replace("http", "ws", 1) + "/api/agents/ws"
    task = asyncio.create_task(run_agent(url, token, allowed=frozenset(allowed), heartbeat=0.5))

    async def online() -> bool:
        agents = (await server.client.get("/api/agents")).json()["items"]
        return any(a["online"] for a in agents)

    await eventually(online)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def story_with_agent(
    database: Database,
    tmp_path: Path,
    emu: RunningEmulator,
    connector: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    # The seed's story has one person asking and approving: these tests are about the rest, so the story's
    # connector allows it (four-eyes has its own tests in test_approval_policy.py).
    fields = {
        "approvers": ["ou_alice"],
        "rate_limit_per_minute": 1000,
        "allow_self_approval": True,
        **(connector or {}),
    }
    async with serve_echocenter(story_settings(database, tmp_path, emu, **overrides), None) as server:
        connector_id = await create_verified_connector(server, **fields)
        token = await register_agent(server.client)
        async with agent_running(server, token):
            yield Stack(server, emu, connector_id)


async def asked(
    story: Stack, text: str = f"run {AGENT} uptime"
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Write a run request; wait for its card and approval."""
    message_id = await story.say(text)
    card = await story.card_for(message_id)

    async def carded() -> list[dict[str, Any]]:  # the card's id is stored just after Feishu accepted it
        return [a for a in await story.approvals(status="PENDING") if a["card_message_id"]]

    approvals = await eventually(carded)
    return message_id, card, approvals[0]
