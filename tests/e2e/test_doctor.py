"""`echocenter doctor` and POST /api/integrations/feishu/:id/doctor against the emulator playing a healthy
app and each misconfiguration the doctor diagnoses."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tests.e2e.harness import Stack, create_verified_connector, e2e_settings, serve_echocenter
from tests.support.databases import Database
from tests.support.emulator import APP_ID, RunningEmulator


async def _doctor(stack: Stack, **body: Any) -> dict[str, Any]:
    response = await stack.api.post(
        f"/api/integrations/feishu/{stack.connector_id}/doctor", json=body or None
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in result["checks"]}


async def _misconfigure(stack: Stack, **setup: Any) -> None:
    await stack.emu.control("PATCH", f"/apps/{APP_ID}", setup)


async def test_a_healthy_app_passes_every_check_and_the_test_message_is_sent(stack: Stack) -> None:
    result = await _doctor(stack, chat_id="oc_ops")
    checks = _by_name(result)
    assert result["ok"] is True
    assert [c["name"] for c in result["checks"]] == [
        "connector",
        "credentials",
        "bot",
        "long_connection",
        "test_message",
    ]
    assert all(c["status"] == "ok" and c["fix"] is None for c in result["checks"])
    assert "ou_bot_emulator0001" in checks["bot"]["summary"]
    sent = (await stack.emu.control("GET", "/sent"))["chats"]["oc_ops"]
    assert [m["content"]["text"] for m in sent] == [
        "EchoCenter doctor: test message — the bot can send here."
    ]


async def test_without_a_chat_no_message_is_sent(stack: Stack) -> None:
    before = await stack.emu.control("GET", "/counters")
    result = await _doctor(stack)
    after = await stack.emu.control("GET", "/counters")
    assert result["ok"] and "test_message" not in _by_name(result)
    key = "POST /open-apis/im/v1/messages"
    assert before["counters"].get(key, 0) == after["counters"].get(key, 0)


async def test_an_app_without_the_bot_capability(stack: Stack) -> None:
    await _misconfigure(stack, bot_enabled=False)
    result = await _doctor(stack, chat_id="oc_ops")
    checks = _by_name(result)
    assert result["ok"] is False
    assert checks["bot"]["status"] == "failed" and checks["bot"]["feishu_code"] == 11205
    assert checks["bot"]["feishu_msg"] == "app do not have bot" and "Bot" in checks["bot"]["fix"]
    assert checks["test_message"]["feishu_code"] == 230006
    assert checks["credentials"]["status"] == "ok"


async def test_missing_scopes_are_named_with_where_to_add_them(stack: Stack) -> None:
    await _misconfigure(stack, missing_scopes=["im:message", "im:message:send_as_bot"])
    result = await _doctor(stack, chat_id="oc_ops")
    check = _by_name(result)["test_message"]
    assert result["ok"] is False and check["status"] == "failed"
    assert check["feishu_code"] == 99991672 and check["http_status"] == 400
    assert "im:message:send_as_bot" in check["feishu_msg"]
    assert "Permissions & Scopes" in check["fix"] and "im:message, im:message:send_as_bot" in check["fix"]


async def test_no_long_connection_subscription(stack: Stack) -> None:
    await _misconfigure(stack, long_connection=False)
    result = await _doctor(stack)
    check = _by_name(result)["long_connection"]
    assert result["ok"] is False and check["status"] == "failed" and check["http_status"] == 400
    assert "im.message.receive_v1" in check["fix"] and "card.action.trigger" in check["fix"]
    assert _by_name(result)["bot"]["status"] == "ok"


async def test_an_unpublished_version(stack: Stack) -> None:
    await _misconfigure(stack, published=False)
    checks = _by_name(await _doctor(stack))
    assert checks["bot"]["status"] == "failed" and "not installed" in checks["bot"]["summary"]
    assert "Publish a version" in checks["bot"]["fix"]
    assert checks["long_connection"]["status"] == "failed"


async def test_a_wrong_secret_fails_credentials_and_skips_what_needs_a_token(stack: Stack) -> None:
    await stack.patch(app_secret="not-the-secret-of-this-app")  # also disables the connector
    result = await _doctor(stack, chat_id="oc_ops")
    checks = _by_name(result)
    assert checks["credentials"]["feishu_code"] == 10014 and "App Secret" in checks["credentials"]["fix"]
    assert checks["bot"]["status"] == "skipped" and checks["test_message"]["status"] == "skipped"
    assert (
        checks["connector"]["status"] == "failed" and "connector_disabled" in checks["connector"]["summary"]
    )


async def test_doctor_needs_an_admin_and_a_valid_chat_id(stack: Stack) -> None:
    url = f"/api/integrations/feishu/{stack.connector_id}/doctor"
    assert (await stack.api.post(url, headers={"Authorization": ""})).status_code == 401
    member = await stack.server.create_member()
    forbidden = await stack.api.post(url, headers={"Authorization": f"Bearer {member}"})
    assert forbidden.status_code == 403
    bad = await stack.api.post(url, json={"chat_id": "oc_ops; rm"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    missing = await stack.api.post("/api/integrations/feishu/999/doctor")
    assert missing.status_code == 404


async def _cli(stack: Stack, *args: str) -> tuple[int, str]:
    settings = stack.server.settings
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.resolved_database_url,
        "DATABASE_SCHEMA": settings.database_schema or "",
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET": settings.jwt_secret,
        "SECRETS_KEY": settings.secrets_key,
        "FEISHU_BASE_URL": stack.emu.url,
        "FEISHU_HTTP_TIMEOUT": "5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "echocenter", "doctor", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_cli_reports_each_check_and_exits_non_zero_on_a_failure(stack: Stack) -> None:
    code, out = await _cli(stack, "--chat", "oc_ops")
    assert code == 0, out
    assert "ok      credentials" in out and "ok      test_message" in out and "all checks passed" in out

    await _misconfigure(stack, missing_scopes=["im:message", "im:message:send_as_bot"])
    code, out = await _cli(stack, "--connector", str(stack.connector_id), "--chat", "oc_ops")
    assert code == 1, out
    assert "FAILED  test_message" in out and "code 99991672" in out
    assert "fix: The app lacks a permission" in out and "im:message:send_as_bot" in out

    code, out = await _cli(stack, "--connector", "999")
    assert code == 2 and "there is no connector 999" in out


async def test_without_long_connections_discovery_is_skipped(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    await emu.control("PATCH", f"/apps/{APP_ID}", {"long_connection": False})  # HTTP callbacks only
    settings = e2e_settings(database, tmp_path, emu.url, feishu_ws_enabled=False)
    async with serve_echocenter(settings, None) as server:
        connector_id = await create_verified_connector(server)
        response = await server.client.post(f"/api/integrations/feishu/{connector_id}/doctor")
    result = response.json()
    assert result["ok"] is True
    assert _by_name(result)["long_connection"]["status"] == "skipped"
