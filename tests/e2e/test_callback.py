"""HTTP callback mode: the emulator POSTs events (encrypted, signed) instead of the long connection."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from echocenter.feishu import callback_crypto
from tests.e2e.harness import Stack
from tests.support.emulator import APP_ID
from tests.support.waiting import eventually

TOKEN = "verification-token-0001"
KEY = "encrypt-key-0001-abcdefghijklmnop"


async def reconfigure(stack: Stack, **changes: Any) -> None:
    """Change credentials (which resets verification), then verify and enable again."""
    await stack.patch(**changes)
    assert (await stack.api.post(f"/api/integrations/feishu/{stack.connector_id}/verify-callback")).json()[
        "ok"
    ]
    await stack.api.patch(f"/api/integrations/feishu/{stack.connector_id}/enable", json={"enabled": True})


async def use_callback(stack: Stack, *, token: str = TOKEN, key: str = KEY) -> str:
    await reconfigure(stack, verification_token=token, encrypt_key=key or None, callback_enabled=True)
    url = f"{stack.server.url}/api/integrations/feishu/callback/{stack.connector_id}"
    await stack.emu.control(
        "PATCH", f"/apps/{APP_ID}", {"callback_url": url, "verification_token": token, "encrypt_key": key}
    )
    return url


def signed(body: bytes, key: str = KEY, timestamp: int | None = None, nonce: str = "n1") -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": callback_crypto.signature(ts, nonce, key, body),
    }


def encrypted(payload: dict[str, Any], key: str = KEY) -> bytes:
    return json.dumps({"encrypt": callback_crypto.encrypt(json.dumps(payload).encode(), key)}).encode()


async def test_encrypted_signed_messages_are_routed(stack: Stack) -> None:
    await use_callback(stack)
    sent = await stack.deliver("over http")

    async def got() -> bool:
        return bool(stack.butler.received)

    await eventually(got)
    assert stack.butler.received[0].text == "over http"
    assert stack.butler.received[0].message_id == sent["message_id"]
    entry = (await stack.logs(action="ws_routed"))[0]
    assert entry["detail"]["transport"] == "callback"
    deliveries = (await stack.emu.control("GET", "/deliveries"))["items"]
    assert deliveries[-1]["ack_device_id"] == "http" and deliveries[-1]["acked"]


async def test_a_card_click_is_answered_in_the_http_response(stack: Stack) -> None:
    await use_callback(stack)
    card = {
        "config": {"update_multi": True},
        "elements": [
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": "Approve"},
                        "value": {"approval_id": "1"},
                    }
                ],
            }
        ],
    }
    card_id = await stack.emu.bot_sends_card(card)
    click = await stack.emu.control("POST", "/cards/click", {"message_id": card_id, "operator": "ou_alice"})
    assert click["status"] == "answered"
    assert click["toast"] == {"type": "error", "content": "Unknown decision."}


async def test_url_verification_encrypted_and_plain(stack: Stack) -> None:
    url = await use_callback(stack)
    async with httpx.AsyncClient() as http:
        challenge = {"challenge": "ch-1", "token": TOKEN, "type": "url_verification"}
        answer = await http.post(
            url, content=encrypted(challenge), headers={"Content-Type": "application/json"}
        )
        assert (answer.status_code, answer.json()) == (200, {"challenge": "ch-1"})
        wrong = await http.post(url, content=encrypted({**challenge, "token": "nope"}))
        assert wrong.status_code == 401
    url = await use_callback(stack, key="")
    async with httpx.AsyncClient() as http:
        plain = await http.post(url, json={"challenge": "ch-2", "token": TOKEN, "type": "url_verification"})
        assert plain.json() == {"challenge": "ch-2"}
        assert (
            await http.post(url, json={"challenge": "x", "token": "bad", "type": "url_verification"})
        ).status_code == 401


async def test_bad_signatures_and_bodies_are_refused_and_logged(stack: Stack) -> None:
    url = await use_callback(stack)
    event = {
        "schema": "2.0",
        "header": {"event_id": "e1", "event_type": "im.message.receive_v1", "token": TOKEN, "app_id": APP_ID},
        "event": {},
    }
    body = encrypted(event)
    async with httpx.AsyncClient() as http:
        tampered = signed(body)
        tampered["X-Lark-Signature"] = "0" * 64
        assert (await http.post(url, content=body, headers=tampered)).status_code == 401
        stale = signed(body, timestamp=int(time.time()) - 3600)
        assert (await http.post(url, content=body, headers=stale)).status_code == 401
        unsigned = await http.post(url, content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401
        assert (await http.post(url, content=b"{not json", headers=signed(b"{not json"))).status_code == 400
        clear = json.dumps(event).encode()
        assert (await http.post(url, content=clear, headers=signed(clear))).status_code == 400
        other_key = encrypted(event, key="some-other-key-000000000000")
        response = await http.post(url, content=other_key, headers=signed(other_key))
        assert response.status_code == 400 and response.json()["error"]["message"].startswith(
            "cannot decrypt"
        )
        for_body = encrypted({**event, "header": {**event["header"], "token": "wrong"}})
        assert (await http.post(url, content=for_body, headers=signed(for_body))).status_code == 401
    rejected = await stack.logs(action="callback_rejected")
    assert len(rejected) == 6
    assert {e["detail"]["status"] for e in rejected} == {400, 401}
    assert all(KEY not in json.dumps(e) and TOKEN not in json.dumps(e) for e in await stack.logs())
    assert stack.butler.received == []


async def test_v1_envelopes_are_checked_by_their_top_level_token(stack: Stack) -> None:
    url = await use_callback(stack, key="")
    v1 = {"uuid": "u1", "token": "wrong", "ts": "1", "type": "event_callback", "event": {"type": "message"}}
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json=v1)).status_code == 401
        accepted = await http.post(url, json={**v1, "token": TOKEN})
        assert (accepted.status_code, accepted.json()) == (200, {})
    await eventually(lambda: _logged(stack, "ws_event_ignored"))


async def _logged(stack: Stack, action: str) -> bool:
    return bool(await stack.logs(action=action))


async def test_the_route_without_an_id_finds_the_connector(stack: Stack) -> None:
    await use_callback(stack, key="")
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{stack.server.url}/api/integrations/feishu/callback",
            json={"challenge": "c", "token": TOKEN, "type": "url_verification"},
        )
    assert answer.json() == {"challenge": "c"}


async def test_unknown_connector_is_404_and_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{stack.server.url}/api/integrations/feishu/callback/999", json={})
    assert response.status_code == 404
    logged = [r for r in caplog.records if r.getMessage() == "unknown_connector"]
    assert logged and logged[0].fields["connector_id"] == 999  # type: ignore[attr-defined]


async def test_a_connector_without_token_or_key_refuses_callbacks(stack: Stack) -> None:
    await stack.patch(callback_enabled=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{stack.server.url}/api/integrations/feishu/callback/{stack.connector_id}",
            json={"challenge": "c", "type": "url_verification"},
        )
    assert response.status_code == 401
    assert "verification token or an encrypt key" in response.json()["error"]["message"]
    assert (await stack.logs(action="callback_rejected"))[0]["detail"]["status"] == 401
