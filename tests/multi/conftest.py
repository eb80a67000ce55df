"""Three `echocenter serve` processes on one PostgreSQL schema, and the Feishu emulator (in the test
process, over its real protocol) delivering each event to one of the app's connections at random."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from echocenter.agents.example import run_agent
from tests.conftest import ADMIN_PASS, ADMIN_USER
from tests.support.databases import Database, fresh_database
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.processes import ServiceProcess, services_started_together
from tests.support.waiting import eventually


@dataclass
class Instance:
    service: ServiceProcess
    api: httpx.AsyncClient  # authenticated as the admin

    @property
    def id(self) -> str:
        return self.service.instance_id


@dataclass
class Cluster:
    instances: list[Instance]
    emu: RunningEmulator
    database: Database

    def __getitem__(self, index: int) -> Instance:
        return self.instances[index]

    def other_than(self, holder: Instance) -> Instance:
        return random.choice([i for i in self.instances if i is not holder])

    async def app_connections(self, app_id: str = APP_ID) -> int:
        items = (await self.emu.control("GET", "/connections"))["items"]
        return sum(1 for c in items if c["app_id"] == app_id)

    async def create_connector(self, on: Instance, **settings: Any) -> int:
        body = {
            "connector_name": "Shared",
            "app_id": APP_ID,
            "app_secret": APP_SECRET,
            "approvers": ["ou_alice"],
            "allow_self_approval": True,  # these tests are about instances; four-eyes has its own
            "prefix_command": "",
            "rate_limit_per_minute": 100,
            **settings,
        }
        created = await on.api.post("/api/integrations/feishu", json=body)
        assert created.status_code == 201, created.text
        connector_id: int = created.json()["id"]
        await self.verify_and_enable(on, connector_id)
        return connector_id

    async def verify_and_enable(self, on: Instance, connector_id: int) -> None:
        verified = await on.api.post(f"/api/integrations/feishu/{connector_id}/verify-callback")
        assert verified.json()["ok"], verified.text
        enabled = await on.api.patch(
            f"/api/integrations/feishu/{connector_id}/enable", json={"enabled": True}
        )
        assert enabled.status_code == 200, enabled.text

    async def wait_connected_everywhere(self, connector_id: int, *, timeout: float = 5.0) -> dict[str, Any]:
        """Every instance holds a connection (the emulator counts them) and says so in the API."""
        expected = f"connected on {len(self.instances)} of {len(self.instances)} instances"

        async def all_connected() -> dict[str, Any] | None:
            if await self.app_connections() != len(self.instances):
                return None
            body: dict[str, Any] = (
                await random.choice(self.instances).api.get(f"/api/integrations/feishu/{connector_id}")
            ).json()
            return body if body["status_summary"] == expected else None

        return await eventually(all_connected, timeout=timeout)

    async def approve_away_from(self, holder: Instance, approvals: list[dict[str, Any]]) -> None:
        """Approve each of ``approvals`` where the agent's ``holder`` is not: every other one by a card click
        (delivered to a random connection, maybe the holder's), the rest through another instance's admin
        API."""
        for index, approval in enumerate(approvals):
            if index % 2:
                decided = await self.other_than(holder).api.post(
                    f"/api/approvals/{approval['id']}/decision", json={"decision": "approve"}
                )
                assert decided.status_code == 200 and decided.json()["decided"], decided.text
            else:
                await self.emu.control(
                    "POST",
                    "/cards/click",
                    {
                        "message_id": approval["card_message_id"],
                        "operator": "ou_alice",
                        "value": {"approval_id": approval["id"], "decision": "approve"},
                    },
                )

    @asynccontextmanager
    async def agent_online_everywhere(self, **connector: Any) -> AsyncIterator[tuple[int, Instance]]:
        """A connector connected on every instance, and the agent "worker" (it runs whoami) registered on the
        first instance, held by the second and seen online by all; yields the connector's id and the holder.
        """
        connector_id = await self.create_connector(self[0], **connector)
        await self.wait_connected_everywhere(connector_id)
        registered = await self[0].api.post("/api/agents", json={"name": "worker"})
        assert registered.status_code == 201, registered.text
        holder = self[1]
        # The agent is given the service's base URL (http://host:port), not the ws URL.
        agent = asyncio.create_task(
            run_agent(
                holder.service.url, registered.json()["token"], allowed=frozenset({"whoami"}), heartbeat=0.5
            )
        )
        try:

            async def online_everywhere() -> bool:
                for instance in self.instances:
                    agents = (await instance.api.get("/api/agents")).json()["items"]
                    if not [a for a in agents if a["name"] == "worker" and a["online"]]:
                        return False
                return True

            await eventually(online_everywhere, timeout=10)
            yield connector_id, holder
        finally:
            agent.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError, OSError):
                await agent


def cluster_env(database: Database, emu_url: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database.url,
        "DATABASE_SCHEMA": database.schema,
        # The same JWT_SECRET and SECRETS_KEY on every instance: tokens and stored secrets are shared.
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SECRETS_KEY": Fernet.generate_key().decode(),
        "INITIAL_ADMIN_USER": ADMIN_USER,
        "INITIAL_ADMIN_PASS": ADMIN_PASS,
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "LOG_LEVEL": "WARNING",
        "FEISHU_BASE_URL": emu_url,
        "FEISHU_WS_ENABLED": "true",
        "FEISHU_HTTP_TIMEOUT": "3",
        # Slow on purpose: a refused connection waits this long, so only a reload can make it quick.
        "FEISHU_WS_BACKOFF_CAP": "30",
        "INSTANCE_HEARTBEAT_SECONDS": "0.5",
        "INSTANCE_TIMEOUT_SECONDS": "3",
        "PRESENCE_FLUSH_SECONDS": "0.5",
        "CONNECTOR_RECONCILE_SECONDS": "30",
        "AGENT_COMMAND_TIMEOUT": "10",
    }


@pytest.fixture
async def cluster(tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Cluster]:
    """Three instances started together on an empty schema (the start-up race is part of every test)."""
    async with (
        fresh_database("postgresql", tmp_path) as database,
        started_cluster(cluster_env(database, emu.url), 3, tmp_path, emu, database) as cluster,
    ):
        yield cluster


@asynccontextmanager
async def started_cluster(
    env: dict[str, str], count: int, workdir: Path, emu: RunningEmulator, database: Database
) -> AsyncIterator[Cluster]:
    """``count`` instances with ``env``, each with an admin-authenticated API client."""
    async with services_started_together(env, count=count, workdir=workdir) as services:
        instances = []
        for service in services:
            api = httpx.AsyncClient(base_url=service.url, timeout=10)
            login = await api.post("/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASS})
            assert login.status_code == 200, login.text
            api.headers["Authorization"] = f"Bearer {login.json()['token']}"
            instances.append(Instance(service, api))
        try:
            yield Cluster(instances, emu, database)
        finally:
            for instance in instances:
                await instance.api.aclose()
