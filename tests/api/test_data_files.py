"""Data files are owner-only and every password follows one rule set (issue 10 point 11)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from echocenter.app import create_app
from tests.conftest import make_settings
from tests.support.databases import Database
from tests.support.live import serve


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


async def test_the_data_folder_keys_database_and_password_file_are_owner_only(
    database: Database, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "jwt.secret").write_text(secrets.token_urlsafe(48))  # left 0644 by an older install
    (data / "jwt.secret").chmod(0o644)
    (data / "initial-admin-password").write_text("stale\n")
    (data / "initial-admin-password").chmod(0o644)
    settings = make_settings(
        database,
        tmp_path,
        environment="development",
        jwt_secret="",
        secrets_key="",
        initial_admin_user="",
        initial_admin_pass="",
        password_hash_memory_kib=19456,
        password_hash_time_cost=2,
    )
    sqlite_file = Path(make_url(database.url).database or "") if database.backend == "sqlite" else None
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        password = (data / "initial-admin-password").read_text().strip()
        assert password != "stale"
        login = await client.post("/api/auth/login", json={"username": "admin", "password": password})
        assert login.status_code == 200
        created = await client.post(
            "/api/users",
            json={"username": "someone", "password": "some-password", "role": "MEMBER"},
            headers={"Authorization": f"Bearer {login.json()['token']}"},
        )
        assert created.status_code == 201
        assert mode(data) == "0o700"
        for name in ("jwt.secret", "secrets.key", "initial-admin-password"):
            assert mode(data / name) == "0o600", name
        if sqlite_file is not None:  # the WAL holds recent writes in clear: it is as private as the database
            for path in (sqlite_file, Path(f"{sqlite_file}-wal"), Path(f"{sqlite_file}-shm")):
                assert path.exists() and mode(path) == "0o600", path

    # Files an earlier version left readable are tightened at the next start.
    (data / "initial-admin-password").chmod(0o644)
    if sqlite_file is not None:
        sqlite_file.chmod(0o644)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/health")).status_code == 200
        assert mode(data / "initial-admin-password") == "0o600"
        if sqlite_file is not None:
            assert mode(sqlite_file) == "0o600"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_weak_initial_admin_password_stops_the_start_with_a_clear_message(
    database: Database, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database.url,
        "DATABASE_SCHEMA": database.schema,
        "INITIAL_ADMIN_USER": "admin",
        "INITIAL_ADMIN_PASS": "a",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "FEISHU_WS_ENABLED": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echocenter",
        "serve",
        "--port",
        str(_free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2, out.decode()
    assert "INITIAL_ADMIN_PASS is refused: the password needs at least 8 characters" in out.decode()
