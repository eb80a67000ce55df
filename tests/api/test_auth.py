from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest

from echocenter.db.types import utcnow
from tests.conftest import ADMIN_PASS, ADMIN_USER, Server


async def test_login_returns_a_token_and_the_user(server: Server) -> None:
    response = await server.client.post(
        "/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASS}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == ADMIN_USER
    assert body["user"]["role"] == "ADMIN"
    assert "password" not in str(body["user"]).lower()
    me = await server.client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["username"] == ADMIN_USER


@pytest.mark.parametrize(
    ("username", "password"), [(ADMIN_USER, "wrong-password"), ("nobody", ADMIN_PASS), (ADMIN_USER, "")]
)
async def test_bad_credentials_are_401_with_one_message(server: Server, username: str, password: str) -> None:
    response = await server.client.post("/api/auth/login", json={"username": username, "password": password})
    if password == "":
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "password"
        return
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "not_authenticated", "message": "invalid username or password"}
    }


async def test_login_with_wrong_types_names_the_field(server: Server) -> None:
    response = await server.client.post("/api/auth/login", json={"username": 42, "password": ADMIN_PASS})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "username"


async def test_repeated_failures_lock_the_username_even_for_the_right_password(server: Server) -> None:
    for _ in range(server.settings.login_max_failures):
        response = await server.client.post(
            "/api/auth/login", json={"username": ADMIN_USER, "password": "nope"}
        )
        assert response.status_code == 401
    locked = await server.client.post(
        "/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASS}
    )
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(locked.headers["Retry-After"]) <= server.settings.login_lockout_seconds + 1


async def test_unknown_usernames_are_locked_out_the_same_way(server: Server) -> None:
    statuses = []
    for _ in range(server.settings.login_max_failures + 1):
        response = await server.client.post("/api/auth/login", json={"username": "ghost", "password": "x"})
        statuses.append(response.status_code)
    assert statuses == [401] * server.settings.login_max_failures + [429]


async def test_a_success_clears_earlier_failures(server: Server) -> None:
    for _ in range(server.settings.login_max_failures - 1):
        await server.client.post("/api/auth/login", json={"username": ADMIN_USER, "password": "nope"})
    await server.login(ADMIN_USER, ADMIN_PASS)
    for _ in range(server.settings.login_max_failures - 1):
        response = await server.client.post(
            "/api/auth/login", json={"username": ADMIN_USER, "password": "nope"}
        )
        assert response.status_code == 401
    await server.login(ADMIN_USER, ADMIN_PASS)


def _token(secret: str, **claims: object) -> str:
    now = utcnow()
    base: dict[str, object] = {
        "sub": "1",
        "role": "ADMIN",
        "iss": "echocenter",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("Bearer", "empty"),
        ("Bearer not.a.jwt", "malformed"),
        ("Basic YWRtaW46YWRtaW4=", "wrong scheme"),
    ],
)
async def test_requests_without_a_valid_token_are_401(server: Server, header: str | None, why: str) -> None:
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        response = await anonymous.get("/api/integrations/feishu", headers=headers)
    assert response.status_code == 401, why
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_expired_forged_and_claimless_tokens_are_401(server: Server) -> None:
    secret = server.settings.jwt_secret
    expired = _token(secret, exp=utcnow() - timedelta(seconds=5), iat=utcnow() - timedelta(minutes=10))
    forged = _token("another-secret-that-is-long-enough-to-be-used-here")
    no_exp = _token(secret, exp=None)
    wrong_issuer = _token(secret, iss="someone-else")
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        for token, why in [
            (expired, "expired"),
            (forged, "forged"),
            (no_exp, "no exp"),
            (wrong_issuer, "iss"),
        ]:
            response = await anonymous.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, why
        response = await anonymous.get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
        assert "expired" in response.json()["error"]["message"]


async def test_a_member_is_forbidden_on_admin_routes(server: Server) -> None:
    member = await server.create_member()
    headers = {"Authorization": f"Bearer {member}"}
    me = await server.client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["role"] == "MEMBER"
    response = await server.client.get("/api/integrations/feishu", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


async def test_creating_a_duplicate_user_is_409(server: Server) -> None:
    await server.create_member("alice")
    response = await server.client.post(
        "/api/users", json={"username": "alice", "password": "another-pass-1", "role": "MEMBER"}
    )
    assert response.status_code == 409
