"""User management and token binding over HTTP (issue 10 point 7): ids are never reused, a token names one
user identity (its token stamp), and admins can disable, delete and log users out server-side."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import ADMIN_PASS, ADMIN_USER, Server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_user(
    server: Server, username: str, role: str = "MEMBER", password: str = "pass-word-1"
) -> Any:
    response = await server.client.post(
        "/api/users", json={"username": username, "password": password, "role": role}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def status_with(server: Server, token: str, path: str = "/api/auth/me") -> int:
    return (await server.client.get(path, headers=bearer(token))).status_code


async def admin_id(server: Server) -> int:
    users = (await server.client.get("/api/users")).json()
    return int(next(user["id"] for user in users if user["username"] == ADMIN_USER))


async def test_a_deleted_users_token_does_not_reach_the_next_user_created(server: Server) -> None:
    member = await create_user(server, "member")
    token = await server.login("member", "pass-word-1")
    assert await status_with(server, token) == 200
    assert (await server.client.delete(f"/api/users/{member['id']}")).status_code == 204
    boss = await create_user(server, "boss", role="ADMIN")
    assert boss["id"] > member["id"]  # never the deleted user's id again
    assert await status_with(server, token) == 401
    refused = await server.client.get("/api/users", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_authenticated"


async def test_ids_of_deleted_users_are_never_reused(server: Server) -> None:
    first = await create_user(server, "first")
    second = await create_user(server, "second")
    assert (await server.client.delete(f"/api/users/{second['id']}")).status_code == 204
    third = await create_user(server, "third")
    assert third["id"] > second["id"] > first["id"]


async def test_an_admin_revokes_a_users_tokens(server: Server) -> None:
    member = await create_user(server, "member")
    tokens = [await server.login("member", "pass-word-1") for _ in range(2)]
    assert (await server.client.post(f"/api/users/{member['id']}/revoke-tokens")).status_code == 204
    for token in tokens:
        assert await status_with(server, token) == 401
    assert await status_with(server, await server.login("member", "pass-word-1")) == 200
    assert await status_with(server, str(server.client.headers["Authorization"]).split()[1]) == 200


async def test_logout_revokes_every_token_of_the_caller_only(server: Server) -> None:
    await create_user(server, "member")
    first, second = [await server.login("member", "pass-word-1") for _ in range(2)]
    anonymous = await server.client.post("/api/auth/logout", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert (await server.client.post("/api/auth/logout", headers=bearer(first))).status_code == 204
    assert await status_with(server, first) == 401
    assert await status_with(server, second) == 401
    assert (await server.client.get("/api/users")).status_code == 200  # the admin is still logged in


async def test_a_disabled_user_can_neither_use_a_token_nor_log_in_until_enabled(server: Server) -> None:
    member = await create_user(server, "member")
    token = await server.login("member", "pass-word-1")
    disabled = await server.client.patch(f"/api/users/{member['id']}", json={"disabled": True})
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True and disabled.json()["is_active"] is False
    assert await status_with(server, token) == 401
    login = await server.client.post(
        "/api/auth/login", json={"username": "member", "password": "pass-word-1"}
    )
    assert login.status_code == 401
    enabled = await server.client.patch(f"/api/users/{member['id']}", json={"disabled": False})
    assert enabled.json()["disabled"] is False
    assert await status_with(server, token) == 401  # enabling does not bring old tokens back
    assert await status_with(server, await server.login("member", "pass-word-1")) == 200


async def test_the_last_active_admin_cannot_be_deleted_disabled_or_demoted(server: Server) -> None:
    me = await admin_id(server)
    for method, body in (("DELETE", None), ("PATCH", {"disabled": True}), ("PATCH", {"role": "MEMBER"})):
        response = await server.client.request(method, f"/api/users/{me}", json=body)
        assert response.status_code == 409, (method, body)
        assert response.json()["error"]["code"] == "conflict"
        assert "last active admin" in response.json()["error"]["message"]
    other = await create_user(server, "second-admin", role="ADMIN")
    # A disabled admin does not count as the other active admin.
    assert (
        await server.client.patch(f"/api/users/{other['id']}", json={"disabled": True})
    ).status_code == 200
    assert (await server.client.delete(f"/api/users/{me}")).status_code == 409
    assert (
        await server.client.patch(f"/api/users/{other['id']}", json={"disabled": False})
    ).status_code == 200
    assert (await server.client.delete(f"/api/users/{me}")).status_code == 204
    assert (await server.client.get("/api/users")).status_code == 401  # the deleted admin's own token


async def test_two_admins_deleting_each_other_at_once_leave_one(server: Server) -> None:
    me = await admin_id(server)
    other = await create_user(server, "second-admin", role="ADMIN")
    other_token = await server.login("second-admin", "pass-word-1")
    mine, theirs = await asyncio.gather(
        server.client.delete(f"/api/users/{other['id']}"),
        server.client.delete(f"/api/users/{me}", headers=bearer(other_token)),
    )
    assert sorted([mine.status_code, theirs.status_code]) in ([204, 409], [204, 401])
    users = (
        await server.client.get("/api/users")
        if mine.status_code == 204
        else await server.client.get("/api/users", headers=bearer(other_token))
    ).json()
    assert [user["role"] for user in users if user["is_active"]] == ["ADMIN"]


async def test_an_admin_sets_a_new_password_under_the_same_rules(server: Server) -> None:
    member = await create_user(server, "member")
    token = await server.login("member", "pass-word-1")
    weak = await server.client.patch(f"/api/users/{member['id']}", json={"password": "short"})
    assert weak.status_code == 422
    assert weak.json()["error"]["fields"][0]["field"] == "password"
    blank = await server.client.patch(f"/api/users/{member['id']}", json={"password": " " * 12})
    assert blank.status_code == 400
    assert blank.json()["error"] == {
        "code": "invalid_request",
        "message": "the password cannot be only spaces",
        "fields": [{"field": "password", "message": "the password cannot be only spaces"}],
    }
    changed = await server.client.patch(f"/api/users/{member['id']}", json={"password": "brand-new-pass"})
    assert changed.status_code == 200
    assert await status_with(server, token) == 401  # a new password logs the old sessions out
    assert await status_with(server, await server.login("member", "brand-new-pass")) == 200


async def test_user_management_is_for_admins_and_checks_ids(server: Server) -> None:
    member = await create_user(server, "member")
    headers = bearer(await server.login("member", "pass-word-1"))
    me = await admin_id(server)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for method, path, body in (
            ("PATCH", f"/api/users/{me}", {"disabled": True}),
            ("DELETE", f"/api/users/{me}", None),
            ("POST", f"/api/users/{me}/revoke-tokens", None),
        ):
            assert (await client.request(method, path, json=body, headers=headers)).status_code == 403
            assert (await client.request(method, path, json=body)).status_code == 401
    assert (await server.client.delete("/api/users/999999")).status_code == 404
    assert (await server.client.post("/api/users/999999/revoke-tokens")).status_code == 404
    assert (await server.client.patch("/api/users/0", json={"disabled": True})).status_code == 422
    not_bool = await server.client.patch(f"/api/users/{member['id']}", json={"disabled": "yes"})
    assert not_bool.status_code == 422
    assert (
        await server.client.post("/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASS})
    ).status_code == 200
