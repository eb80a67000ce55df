from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from echocenter.app import create_app
from echocenter.emulator import EmulatorConfig
from echocenter.settings import Environment, Settings
from tests.support.databases import BACKENDS, Database, fresh_database
from tests.support.emulator import RunningEmulator, running_emulator
from tests.support.fake_feishu_auth import FakeFeishuAuth
from tests.support.live import serve

ADMIN_USER = "admin"
ADMIN_PASS = "admin-password-1"


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
async def fake_feishu() -> AsyncIterator[tuple[FakeFeishuAuth, str]]:
    fake = FakeFeishuAuth()
    async with serve(fake.app(), lifespan="off") as url:
        yield fake, url


def make_settings(database: Database, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "data_dir": tmp_path / "data",
        "database_url": database.url,
        "database_schema": database.schema,
        "jwt_secret": secrets.token_urlsafe(48),
        "secrets_key": Fernet.generate_key().decode(),
        "initial_admin_user": ADMIN_USER,
        "initial_admin_pass": ADMIN_PASS,
        "feishu_http_timeout": 0.5,
        "login_max_failures": 3,
        "login_lockout_seconds": 60,
        "max_body_bytes": 64 * 1024,
        "feishu_ws_enabled": False,
        "password_hash_memory_kib": 1024,  # the test environment may hash cheaply
        "password_hash_time_cost": 1,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Server:
    url: str
    settings: Settings
    client: httpx.AsyncClient  # authenticated as the initial admin

    async def login(self, username: str, password: str) -> str:
        response = await self.client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def create_member(self, username: str = "member", password: str = "member-password-1") -> str:
        response = await self.client.post(
            "/api/users", json={"username": username, "password": password, "role": "MEMBER"}
        )
        assert response.status_code == 201, response.text
        return await self.login(username, password)


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[Server]:
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        server = Server(url=url, settings=settings, client=client)
        client.headers["Authorization"] = f"Bearer {await server.login(ADMIN_USER, ADMIN_PASS)}"
        yield server


@pytest.fixture
async def server(
    database: Database, tmp_path: Path, fake_feishu: tuple[FakeFeishuAuth, str]
) -> AsyncIterator[Server]:
    settings = make_settings(database, tmp_path, feishu_base_url=fake_feishu[1])
    async with running_server(settings) as running:
        yield running


# The emulator e2e tests run on: ack deadline shortened so redelivery tests stay quick.
E2E_EMULATOR = {"ack_timeout_seconds": 1.0, "card_response_timeout_seconds": 3.0}


@pytest.fixture
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[RunningEmulator]:
    """The Feishu emulator on a real port. A module or test sets its config with
    ``@pytest.mark.emulator(**EmulatorConfig fields)`` (no fields: Feishu's own defaults) or
    ``@pytest.mark.emulator(an EmulatorConfig)``, else E2E_EMULATOR applies."""
    marker = request.node.get_closest_marker("emulator")
    if marker and marker.args:
        config: EmulatorConfig = marker.args[0]
    else:
        config = EmulatorConfig(**(marker.kwargs if marker else E2E_EMULATOR))
    async with running_emulator(config) as e:
        yield e
