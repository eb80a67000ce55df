from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from echocenter.db.engine import make_engine
from tests.conftest import Server
from tests.support.fake_feishu_auth import VALID_APP_ID, VALID_APP_SECRET, FakeFeishuAuth

VERIFICATION_TOKEN = "vt-0123456789abcdefXYZ"
ENCRYPT_KEY = "ek-0123456789abcdefQRS"
SECRETS = (VALID_APP_SECRET, VERIFICATION_TOKEN, ENCRYPT_KEY)


def connector_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connector_name": "Ops chat",
        "app_id": VALID_APP_ID,
        "app_secret": VALID_APP_SECRET,
        "verification_token": VERIFICATION_TOKEN,
        "encrypt_key": ENCRYPT_KEY,
        "allow_dm": True,
        "allow_group_mention": True,
        "mention_required": True,
        "allowed_chat_ids": ["oc_ops"],
        "user_whitelist": [],
        "prefix_command": "/bot",
        "ignore_bot_messages": True,
        "rate_limit_per_minute": 20,
        "approvers": ["ou_alice"],
    }
    body.update(overrides)
    return body


async def create(server: Server, **overrides: Any) -> dict[str, Any]:
    response = await server.client.post("/api/integrations/feishu", json=connector_body(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def logs(server: Server, connector_id: int, **params: Any) -> list[dict[str, Any]]:
    response = await server.client.get(f"/api/integrations/feishu/{connector_id}/logs", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_create_stores_settings_and_returns_secrets_masked(server: Server) -> None:
    response = await server.client.post("/api/integrations/feishu", json=connector_body())
    assert response.status_code == 201
    body = response.json()
    assert body["app_id"] == VALID_APP_ID
    assert body["approvers"] == ["ou_alice"]
    assert body["allowed_chat_ids"] == ["oc_ops"]
    assert body["has_app_secret"] and body["has_verification_token"] and body["has_encrypt_key"]
    assert body["app_secret_mask"] == "********" + VALID_APP_SECRET[-4:]
    assert (body["enabled"], body["callback_verified"], body["last_verified_at"]) == (False, False, None)
    assert body["status"] == "disconnected"
    for secret in SECRETS:
        assert secret not in response.text
    listed = await server.client.get("/api/integrations/feishu")
    assert [c["id"] for c in listed.json()["items"]] == [body["id"]]
    assert all(secret not in listed.text for secret in SECRETS)
    assert [e["action"] for e in await logs(server, body["id"])] == ["create_connector"]


async def test_secrets_are_encrypted_at_rest(server: Server) -> None:
    await create(server)
    engine = make_engine(server.settings.resolved_database_url, schema=server.settings.database_schema)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM feishu_connectors"))).mappings().one()
    finally:
        await engine.dispose()
    stored = " ".join(str(v) for v in row.values())
    assert row["app_secret_enc"] and row["verification_token_enc"] and row["encrypt_key_enc"]
    for secret in SECRETS:
        assert secret not in stored


@pytest.mark.parametrize("field", ["enabled", "status", "callback_verified", "last_verified_at"])
async def test_server_managed_fields_cannot_be_set(server: Server, field: str) -> None:
    value = {
        "enabled": True,
        "status": "connected",
        "callback_verified": True,
        "last_verified_at": "2026-01-01T00:00:00Z",
    }[field]
    response = await server.client.post("/api/integrations/feishu", json=connector_body(**{field: value}))
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [
        {"field": field, "message": "is not a field that can be set"}
    ]
    assert (await server.client.get("/api/integrations/feishu")).json()["items"] == []
    connector = await create(server)
    patch = await server.client.patch(f"/api/integrations/feishu/{connector['id']}", json={field: value})
    assert patch.status_code == 422
    after = (await server.client.get(f"/api/integrations/feishu/{connector['id']}")).json()
    assert (after["enabled"], after["callback_verified"]) == (False, False)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"allow_dm": "yes"}, "allow_dm"),
        ({"allow_group_mention": 1}, "allow_group_mention"),
        ({"allowed_chat_ids": "oc_ops"}, "allowed_chat_ids"),
        ({"allowed_chat_ids": [1, 2]}, "allowed_chat_ids[0]"),
        ({"user_whitelist": [""]}, "user_whitelist[0]"),
        ({"approvers": ["ou_a", None]}, "approvers[1]"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": -5}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": "10"}, "rate_limit_per_minute"),
        ({"app_id": "cli bad id!"}, "app_id"),
        ({"connector_name": ""}, "connector_name"),
        ({"prefix_command": "x" * 33}, "prefix_command"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    server: Server, overrides: dict[str, Any], field: str
) -> None:
    response = await server.client.post("/api/integrations/feishu", json=connector_body(**overrides))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]]
    assert field.split("[")[0] in error["message"]
    assert (await server.client.get("/api/integrations/feishu")).json()["items"] == []


async def test_bad_patch_changes_nothing(server: Server) -> None:
    connector = await create(server)
    response = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}",
        json={"connector_name": "renamed", "rate_limit_per_minute": 0},
    )
    assert response.status_code == 422
    after = (await server.client.get(f"/api/integrations/feishu/{connector['id']}")).json()
    assert after["connector_name"] == "Ops chat"


async def test_malformed_json_and_oversized_bodies_are_refused(server: Server) -> None:
    bad = await server.client.post(
        "/api/integrations/feishu", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    huge = connector_body(
        allowed_chat_ids=[f"oc_{i:08d}" for i in range(999)], user_whitelist=["u" * 128] * 900
    )
    too_large = await server.client.post("/api/integrations/feishu", json=huge)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit still holds while streaming
        for _ in range(100):
            yield b" " * 1024

    streamed = await server.client.post(
        "/api/integrations/feishu", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert (await server.client.get("/api/integrations/feishu")).json()["items"] == []


@pytest.mark.parametrize("path_id", ["abc", "0", "-1", "1.5", "99999999999"])
async def test_invalid_ids_are_422(server: Server, path_id: str) -> None:
    response = await server.client.get(f"/api/integrations/feishu/{path_id}")
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "connector_id"


async def test_unknown_ids_are_404_on_every_route(server: Server) -> None:
    base = "/api/integrations/feishu/4242"
    calls = [
        ("GET", base, None),
        ("PATCH", base, {"connector_name": "x"}),
        ("DELETE", base, None),
        ("POST", f"{base}/verify-callback", None),
        ("PATCH", f"{base}/enable", {"enabled": True}),
        ("GET", f"{base}/logs", None),
    ]
    for method, url, body in calls:
        response = await server.client.request(method, url, json=body)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"] == {"code": "not_found", "message": "connector 4242 does not exist"}


async def test_duplicate_app_id_is_409(server: Server) -> None:
    await create(server)
    response = await server.client.post(
        "/api/integrations/feishu", json=connector_body(connector_name="Twin")
    )
    assert response.status_code == 409
    assert response.json()["error"]["fields"][0]["field"] == "app_id"
    assert len((await server.client.get("/api/integrations/feishu")).json()["items"]) == 1


async def test_every_connector_route_requires_an_admin(server: Server) -> None:
    connector = await create(server)
    member = await server.create_member()
    base = f"/api/integrations/feishu/{connector['id']}"
    calls = [
        ("GET", "/api/integrations/feishu", None),
        ("POST", "/api/integrations/feishu", connector_body(app_id="cli_other")),
        ("GET", base, None),
        ("PATCH", base, {"connector_name": "x"}),
        ("DELETE", base, None),
        ("POST", f"{base}/verify-callback", None),
        ("PATCH", f"{base}/enable", {"enabled": False}),
        ("GET", f"{base}/logs", None),
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"username": "x", "password": "long-enough-1"}),
    ]
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        for method, url, body in calls:
            assert (await anonymous.request(method, url, json=body)).status_code == 401, (method, url)
            as_member = await anonymous.request(
                method, url, json=body, headers={"Authorization": f"Bearer {member}"}
            )
            assert as_member.status_code == 403, (method, url)
    assert (await server.client.get(base)).json()["connector_name"] == "Ops chat"


async def test_patch_changes_only_what_is_sent(server: Server) -> None:
    connector = await create(server)
    response = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}",
        json={"mention_required": False, "user_whitelist": ["ou_bob", "ou_bob", " ou_carol "]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mention_required"] is False
    assert body["user_whitelist"] == ["ou_bob", "ou_carol"]
    assert body["connector_name"] == "Ops chat" and body["has_app_secret"]
    entry = (await logs(server, connector["id"], action="update_connector"))[0]
    assert entry["detail"]["changed"] == ["mention_required", "user_whitelist"]
    assert entry["detail"]["verification_reset"] is False


async def verified_and_enabled(server: Server) -> dict[str, Any]:
    connector = await create(server)
    verify = await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert verify.json()["ok"] is True, verify.text
    enable = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}/enable", json={"enabled": True}
    )
    assert enable.status_code == 200 and enable.json()["enabled"] is True
    return enable.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "change",
    [
        {"app_id": "cli_someotherapp"},
        {"app_secret": "a-brand-new-secret-value-123456"},
        {"verification_token": "new-token"},
        {"encrypt_key": None},
    ],
)
async def test_credential_changes_reset_verification_and_disable(
    server: Server, change: dict[str, Any]
) -> None:
    connector = await verified_and_enabled(server)
    response = await server.client.patch(f"/api/integrations/feishu/{connector['id']}", json=change)
    assert response.status_code == 200
    body = response.json()
    assert (body["callback_verified"], body["enabled"], body["last_verified_at"]) == (False, False, None)
    entries = await logs(server, connector["id"])
    assert entries[0]["action"] == "disable_connector"
    assert entries[0]["detail"]["reason"] == "credentials_changed"
    assert entries[1]["action"] == "update_connector"
    assert entries[1]["detail"]["verification_reset"] is True
    assert entries[1]["detail"]["changed"] == list(change)


async def test_sending_the_same_credentials_again_keeps_verification(server: Server) -> None:
    connector = await verified_and_enabled(server)
    response = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}",
        json={"app_id": VALID_APP_ID, "app_secret": VALID_APP_SECRET, "connector_name": "Renamed"},
    )
    body = response.json()
    assert body["connector_name"] == "Renamed"
    assert (body["callback_verified"], body["enabled"]) == (True, True)


async def test_secrets_can_be_cleared_with_null_or_empty(server: Server) -> None:
    connector = await create(server)
    response = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}", json={"verification_token": None, "encrypt_key": ""}
    )
    body = response.json()
    assert (body["has_verification_token"], body["verification_token_mask"]) == (False, None)
    assert (body["has_encrypt_key"], body["has_app_secret"]) == (False, True)


async def test_verify_success_sets_verified_and_time(
    server: Server, fake_feishu: tuple[FakeFeishuAuth, str]
) -> None:
    connector = await create(server)
    response = await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["connector"]["callback_verified"] is True
    assert body["connector"]["last_verified_at"] is not None
    assert fake_feishu[0].requests == [{"app_id": VALID_APP_ID, "app_secret": VALID_APP_SECRET}]
    entry = (await logs(server, connector["id"], action="verify_callback"))[0]
    assert (entry["level"], entry["detail"]["ok"]) == ("info", True)


@pytest.mark.parametrize(
    ("mode", "overrides", "kind", "words"),
    [
        ("real", {"app_secret": "the-wrong-secret-0000000000"}, "api", "App Secret is not valid"),
        ("real", {"app_id": "cli_unknown"}, "api", "App ID is not valid"),
        ("http_500", {}, "http", "HTTP 500"),
        ("slow", {}, "timeout", "did not answer within"),
        ("garbage", {}, "bad_response", "not the JSON"),
        ("no_token", {}, "bad_response", "no tenant_access_token"),
    ],
)
async def test_verify_failures_say_what_went_wrong(
    server: Server,
    fake_feishu: tuple[FakeFeishuAuth, str],
    mode: str,
    overrides: dict[str, Any],
    kind: str,
    words: str,
) -> None:
    fake_feishu[0].mode = mode
    connector = await create(server, **overrides)
    response = await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert words in body["message"]
    assert body["detail"]["error_kind"] == kind
    assert body["connector"]["callback_verified"] is False
    assert body["connector"]["last_error"] == body["message"]
    if kind == "api":
        expected = (10014, "app secret invalid") if "secret" in str(overrides) else (10003, "invalid param")
        assert (body["detail"]["feishu_code"], body["detail"]["feishu_msg"]) == expected
    entry = (await logs(server, connector["id"], action="verify_callback"))[0]
    assert (entry["level"], entry["detail"]["ok"], entry["detail"]["error_kind"]) == ("warn", False, kind)
    refused = await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}/enable", json={"enabled": True}
    )
    assert refused.status_code == 409


async def test_verify_reports_an_unreachable_feishu(server: Server) -> None:
    server.settings.feishu_base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    connector = await create(server)
    body = (await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")).json()
    assert body["ok"] is False
    assert body["detail"]["error_kind"] == "network"
    assert "cannot reach Feishu" in body["message"]


async def test_verify_without_app_id_or_secret_is_400(server: Server) -> None:
    connector = await create(server, app_id="", app_secret=None)
    response = await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == [
        {"field": "app_id", "message": "app_id is empty: set the App ID before verifying"}
    ]
    await server.client.patch(f"/api/integrations/feishu/{connector['id']}", json={"app_id": "cli_x"})
    response = await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "app_secret"


async def test_a_failed_reverification_disables_the_connector(
    server: Server, fake_feishu: tuple[FakeFeishuAuth, str]
) -> None:
    connector = await verified_and_enabled(server)
    fake_feishu[0].mode = "http_500"
    body = (await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")).json()
    assert body["ok"] is False
    assert (body["connector"]["callback_verified"], body["connector"]["enabled"]) == (False, False)


async def test_enable_requires_verification_and_is_logged(server: Server) -> None:
    connector = await create(server)
    url = f"/api/integrations/feishu/{connector['id']}/enable"
    refused = await server.client.patch(url, json={"enabled": True})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "connector_not_verified"
    assert "verify-callback" in refused.json()["error"]["message"]
    await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    assert (await server.client.patch(url, json={"enabled": True})).json()["enabled"] is True
    assert (await server.client.patch(url, json={"enabled": False})).json()["enabled"] is False
    bad = await server.client.patch(url, json={"enabled": "yes"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "enabled"
    actions = [e["action"] for e in await logs(server, connector["id"])]
    assert actions[:2] == ["disable_connector", "enable_connector"]


async def test_delete_removes_the_connector(server: Server) -> None:
    connector = await create(server)
    response = await server.client.delete(f"/api/integrations/feishu/{connector['id']}")
    assert response.status_code == 204
    assert (await server.client.get(f"/api/integrations/feishu/{connector['id']}")).status_code == 404
    again = await server.client.post("/api/integrations/feishu", json=connector_body())
    assert again.status_code == 201  # the app_id is free again


async def test_logs_page_newest_first_without_a_dangling_cursor(server: Server) -> None:
    connector = await create(server)
    for i in range(6):
        await server.client.patch(
            f"/api/integrations/feishu/{connector['id']}", json={"connector_name": f"n{i}"}
        )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (
            await server.client.get(f"/api/integrations/feishu/{connector['id']}/logs", params=params)
        ).json()
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3  # 7 entries: 3 + 3 + 1, and the last page says there is no more
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 7
    exact = (
        await server.client.get(f"/api/integrations/feishu/{connector['id']}/logs", params={"limit": 7})
    ).json()
    assert exact["next_cursor"] is None and len(exact["items"]) == 7


async def test_logs_filter_by_action_and_level(
    server: Server, fake_feishu: tuple[FakeFeishuAuth, str]
) -> None:
    connector = await create(server)
    fake_feishu[0].mode = "garbage"
    await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    warns = await logs(server, connector["id"], level="warn")
    assert [e["action"] for e in warns] == ["verify_callback"]
    created = await logs(server, connector["id"], action="create_connector")
    assert len(created) == 1 and created[0]["level"] == "info"
    bad_level = await server.client.get(
        f"/api/integrations/feishu/{connector['id']}/logs", params={"level": "loud"}
    )
    assert bad_level.status_code == 422 and bad_level.json()["error"]["fields"][0]["field"] == "level"
    for bad in ({"cursor": "abc"}, {"limit": 0}, {"limit": 1000}):
        response = await server.client.get(f"/api/integrations/feishu/{connector['id']}/logs", params=bad)
        assert response.status_code == 422, bad


async def test_no_secret_reaches_logs(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connector = await create(server)
    await server.client.post(f"/api/integrations/feishu/{connector['id']}/verify-callback")
    await server.client.patch(
        f"/api/integrations/feishu/{connector['id']}", json={"app_secret": "rotated-secret-value-987654321"}
    )
    api_logs = (await server.client.get(f"/api/integrations/feishu/{connector['id']}/logs")).text
    for secret in (*SECRETS, "rotated-secret-value-987654321", "t-fake-token"):
        assert secret not in api_logs
        assert secret not in caplog.text


async def test_openapi_describes_every_route(server: Server) -> None:
    spec = (await server.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/auth/login",
        "/api/integrations/feishu",
        "/api/integrations/feishu/{connector_id}",
        "/api/integrations/feishu/{connector_id}/verify-callback",
        "/api/integrations/feishu/{connector_id}/enable",
        "/api/integrations/feishu/{connector_id}/logs",
    ):
        assert path in paths
    assert "ConnectorSettings" in spec["components"]["schemas"]
    assert (await server.client.get("/docs")).status_code == 200


async def test_callback_enabled_is_off_by_default_and_set_by_create_and_patch(server: Server) -> None:
    default = await server.client.post("/api/integrations/feishu", json={"connector_name": "Long only"})
    assert default.json()["callback_enabled"] is False
    created = await server.client.post(
        "/api/integrations/feishu", json={"connector_name": "Callback", "callback_enabled": True}
    )
    assert created.status_code == 201 and created.json()["callback_enabled"] is True
    url = f"/api/integrations/feishu/{created.json()['id']}"
    assert (await server.client.get(url)).json()["callback_enabled"] is True
    assert (await server.client.patch(url, json={"callback_enabled": False})).json()[
        "callback_enabled"
    ] is False
    assert (await server.client.get(url)).json()["callback_enabled"] is False
    refused = await server.client.patch(url, json={"callback_enabled": "yes"})
    assert refused.status_code == 422
    [entry] = [
        e
        for e in (await server.client.get(f"{url}/logs", params={"action": "update_connector"})).json()[
            "items"
        ]
        if "callback_enabled" in e["detail"]["changed"]
    ]
    assert entry["level"] == "info"  # not a credential: verification stays
