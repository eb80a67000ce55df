from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from echocenter.app import create_app
from tests.conftest import make_settings
from tests.support.databases import Database
from tests.support.live import serve


def cli_env(database: Database, tmp_path: Path, jwt_secret: str) -> dict[str, str]:
    """The environment `echocenter` needs to reach the test's database."""
    return {
        "DATABASE_URL": database.url,
        "DATABASE_SCHEMA": database.schema,
        "DATA_DIR": str(tmp_path / "data"),
        "ENVIRONMENT": "test",
        "JWT_SECRET": jwt_secret,
    }


async def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echocenter",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_admin_create_makes_a_user_who_can_log_in(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, initial_admin_user="", initial_admin_pass="")
    env = {**cli_env(database, tmp_path, settings.jwt_secret), "ECHOCENTER_NEW_PASSWORD": "cli-made-password"}
    code, out = await _cli(["admin", "create", "--username", "root-admin"], env)
    assert code == 0, out
    assert "created ADMIN root-admin" in out
    again, out = await _cli(["admin", "create", "--username", "root-admin"], env)
    assert again == 1 and "already exists" in out
    weak, out = await _cli(
        ["admin", "create", "--username", "x"], {**env, "ECHOCENTER_NEW_PASSWORD": "short"}
    )
    assert weak == 2 and "at least 8" in out

    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/api/auth/login", json={"username": "root-admin", "password": "cli-made-password"}
        )
        assert response.status_code == 200
        assert response.json()["user"]["role"] == "ADMIN"


async def test_a_fresh_development_install_hands_over_a_generated_admin(tmp_path: Path) -> None:
    db = Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}", "")
    settings = make_settings(
        db,
        tmp_path,
        environment="development",
        initial_admin_user="",
        initial_admin_pass="",
        password_hash_memory_kib=19456,
        password_hash_time_cost=2,
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        password_file = tmp_path / "data" / "initial-admin-password"
        assert oct(password_file.stat().st_mode & 0o777) == "0o600"
        password = password_file.read_text().strip()
        response = await client.post("/api/auth/login", json={"username": "admin", "password": password})
        assert response.status_code == 200
