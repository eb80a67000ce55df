"""Login throttling over HTTP: atomic counting (issue 10 point 1), per username *and* client address
with an admin-visible log line (point 14), case-consistent usernames, a per-client budget, bounded hashing
(point 8).

Other client addresses are real: loopback has all of 127.0.0.0/8, so a client bound to 127.0.0.2 is another
address to the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from echocenter.auth.throttle import client_key, user_key
from tests.conftest import ADMIN_PASS, ADMIN_USER, Server, make_settings, running_server
from tests.support.databases import Database
from tests.support.db_peek import fetch_all

WRONG = {"username": ADMIN_USER, "password": "wrong-password"}
RIGHT = {"username": ADMIN_USER, "password": ADMIN_PASS}


@asynccontextmanager
async def client_from(server: Server, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30) as client:
        yield client


async def failures(server: Server, key: str) -> int | None:
    rows = await fetch_all(server.settings, "SELECT failures FROM login_attempts WHERE key = :key", key=key)
    return int(rows[0][0]) if rows else None


async def test_concurrent_wrong_logins_cannot_get_around_the_lock_out(server: Server) -> None:
    limit = server.settings.login_max_failures
    statuses: Counter[int] = Counter()
    for _ in range(3):
        responses = await asyncio.gather(
            *(server.client.post("/api/auth/login", json=WRONG) for _ in range(20))
        )
        statuses.update(response.status_code for response in responses)
    # Exactly `limit` passwords were checked; every other attempt was refused before any hashing.
    assert statuses == {401: limit, 429: 60 - limit}
    assert await failures(server, user_key(ADMIN_USER, "127.0.0.1")) == limit
    locked = await server.client.post("/api/auth/login", json=RIGHT)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(locked.headers["Retry-After"]) <= server.settings.login_lockout_seconds + 1


async def test_a_stranger_locks_the_admin_out_only_from_their_own_address(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="echocenter.auth.service")
    async with client_from(server, "127.0.0.2") as stranger:
        statuses = [
            (await stranger.post("/api/auth/login", json=WRONG)).status_code
            for _ in range(server.settings.login_max_failures + 1)
        ]
        assert statuses == [401] * server.settings.login_max_failures + [429]
        assert (await stranger.post("/api/auth/login", json=RIGHT)).status_code == 429
    # The admin, from another address, is not locked out.
    assert (await server.client.post("/api/auth/login", json=RIGHT)).status_code == 200
    # Admins are told: one structured warning names the username, the address and the lock's length.
    lockouts = [record for record in caplog.records if record.getMessage() == "login_locked_out"]
    assert len(lockouts) == 1
    fields = lockouts[0].fields  # type: ignore[attr-defined]
    assert fields["username"] == ADMIN_USER
    assert fields["client"] == "127.0.0.2"
    assert fields["locked_seconds"] == server.settings.login_lockout_seconds
    assert "wrong-password" not in caplog.text


async def test_usernames_are_one_user_and_one_counter_whatever_their_case(server: Server) -> None:
    response = await server.client.post("/api/auth/login", json={**RIGHT, "username": "ADMIN"})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == ADMIN_USER
    duplicate = await server.client.post(
        "/api/users", json={"username": "Admin", "password": "another-pass-1", "role": "MEMBER"}
    )
    assert duplicate.status_code == 409
    spellings = ["Admin", "ADMIN", "aDmIn", "admin"]
    for spelling in spellings[: server.settings.login_max_failures]:
        wrong = await server.client.post("/api/auth/login", json={**WRONG, "username": spelling})
        assert wrong.status_code == 401
    assert await failures(server, user_key(ADMIN_USER, "127.0.0.1")) == server.settings.login_max_failures
    for spelling in spellings:
        refused = await server.client.post("/api/auth/login", json={**RIGHT, "username": spelling})
        assert refused.status_code == 429, spelling


@pytest.fixture
async def budget_server(database: Database, tmp_path: Path) -> AsyncIterator[Server]:
    settings = make_settings(database, tmp_path, login_max_failures_per_client=4)
    async with running_server(settings) as running:
        yield running


async def test_one_address_has_a_failure_budget_over_all_usernames(budget_server: Server) -> None:
    server = budget_server
    async with client_from(server, "127.0.0.3") as sprayer:
        for n in range(4):  # one try each for many usernames stays under the per-username limit
            wrong = await sprayer.post("/api/auth/login", json={"username": f"user{n}", "password": "x"})
            assert wrong.status_code == 401
        refused = await sprayer.post("/api/auth/login", json={"username": "user-next", "password": "x"})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        # A refused attempt checked nothing and counted nothing on that username.
        assert await failures(server, user_key("user-next", "127.0.0.3")) in (None, 0)
    assert await failures(server, client_key("127.0.0.3")) == 4
    assert (await server.client.post("/api/auth/login", json=RIGHT)).status_code == 200
    # A success from an address gives its own slot back and leaves the address's failures standing.
    assert await failures(server, client_key("127.0.0.1")) == 0


@pytest.fixture
async def slow_hash_server(database: Database, tmp_path: Path) -> AsyncIterator[Server]:
    settings = make_settings(
        database,
        tmp_path,
        password_hash_time_cost=100,  # ~0.2 s per hash here, so logins overlap
        login_max_concurrent_hashes=1,
        login_hash_wait_seconds=0.3,
    )
    async with running_server(settings) as running:
        yield running


async def test_logins_beyond_the_hashing_slots_wait_briefly_then_get_429(slow_hash_server: Server) -> None:
    server = slow_hash_server
    names = [f"visitor{n}" for n in range(10)]
    responses = await asyncio.gather(
        *(server.client.post("/api/auth/login", json={"username": name, "password": "x"}) for name in names)
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses[401] >= 1 and statuses[429] >= 1, statuses
    for name, response in zip(names, responses, strict=True):
        if response.status_code == 429:
            assert response.json()["error"]["message"].startswith("the server is busy")
            assert response.headers["Retry-After"] == "1"
            # Turned away before its password was checked: not counted as a failure.
            assert await failures(server, user_key(name, "127.0.0.1")) == 0
        else:
            assert await failures(server, user_key(name, "127.0.0.1")) == 1
