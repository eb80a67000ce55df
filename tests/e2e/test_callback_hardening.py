"""The HTTP callback is closed unless a connector opts in, card actions over it must be signed, a signed
request is accepted once (on every instance), rejections are logged once per interval, and malformed bodies
or cursors are a 4xx — never a 500 (issue 10, points 4a/4b, 6, 9, 14)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from echocenter.settings import Settings
from tests.e2e.harness import Stack, serve_echocenter
from tests.e2e.test_callback import KEY, TOKEN, encrypted, signed, use_callback
from tests.support.emulator import APP_ID
from tests.support.recording_butler import RecordingButler
from tests.support.waiting import eventually


def _another_instance(stack: Stack, **overrides: Any) -> Settings:
    """Settings for a second EchoCenter on the same database (no long connection of its own)."""
    return stack.server.settings.model_copy(update={"feishu_ws_enabled": False, **overrides})


def callback_url(stack: Stack) -> str:
    return f"{stack.server.url}/api/integrations/feishu/callback/{stack.connector_id}"


def message_event(event_id: str, text: str = "hi") -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "event_type": "im.message.receive_v1",
            "token": TOKEN,
            "app_id": APP_ID,
        },
        "event": {
            "sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": "user"},
            "message": {
                "message_id": f"om_{event_id}",
                "chat_id": "oc_ops",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
            },
        },
    }


def card_action(
    approval_id: Any, *, token: str = TOKEN, open_message_id: str = "om_made_up"
) -> dict[str, Any]:
    """What the review POSTed: a click by an approver, authenticated by the verification token alone."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": "ev-forged",
            "event_type": "card.action.trigger",
            "token": token,
            "app_id": APP_ID,
        },
        "event": {
            "operator": {"open_id": "ou_alice"},
            "action": {"tag": "button", "value": {"approval_id": approval_id, "decision": "approve"}},
            "context": {"open_message_id": open_message_id, "open_chat_id": "oc_ops"},
        },
    }


async def test_the_callback_answers_only_connectors_that_turn_it_on(stack: Stack) -> None:
    assert (await stack.connector())["callback_enabled"] is False  # the default: long connection only
    await stack.patch(verification_token=TOKEN)
    challenge = {"challenge": "ch", "token": TOKEN, "type": "url_verification"}
    async with httpx.AsyncClient() as http:
        closed = await http.post(callback_url(stack), json=challenge)
        assert closed.status_code == 403
        assert closed.json()["error"]["code"] == "callback_disabled"
        no_id = await http.post(f"{stack.server.url}/api/integrations/feishu/callback", json=challenge)
        assert no_id.status_code == 403
        [entry] = await stack.logs(action="callback_rejected")
        assert entry["detail"]["status"] == 403 and "callback_enabled" in entry["detail"]["reason"]
        assert (await stack.patch(callback_enabled=True))["callback_enabled"] is True
        opened = await http.post(callback_url(stack), json=challenge)
    assert (opened.status_code, opened.json()) == (200, {"challenge": "ch"})


async def test_unsigned_card_actions_are_refused_and_logged(stack: Stack) -> None:
    url = await use_callback(stack, key="")  # verification token only: nothing is signed
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, json=card_action(1))
        message = await http.post(url, json=message_event("ev-plain"))
    assert refused.status_code == 401
    assert "must be signed" in refused.json()["error"]["message"]
    [entry] = await stack.logs(action="callback_rejected")
    assert "must be signed" in entry["detail"]["reason"]
    assert message.status_code == 200  # plain events still flow: only decisions need a signature
    await eventually(lambda: _received(stack))


async def _received(stack: Stack) -> bool:
    return bool(stack.butler.received)


async def test_a_signed_callback_is_accepted_once_even_on_another_instance(stack: Stack) -> None:
    url = await use_callback(stack)
    body = encrypted(message_event("ev-replayed"))
    headers = signed(body, nonce="nonce-replayed")
    async with httpx.AsyncClient() as http:
        first = await http.post(url, content=body, headers=headers)
        again = await http.post(url, content=body, headers=headers)
        assert (first.status_code, again.status_code) == (200, 401)
        assert "replay" in again.json()["error"]["message"]
        # A second instance on the same database refuses it too: the signature is remembered there.
        async with serve_echocenter(_another_instance(stack), RecordingButler()) as other:
            elsewhere = await http.post(
                f"{other.url}/api/integrations/feishu/callback/{stack.connector_id}",
                content=body,
                headers=headers,
            )
        assert elsewhere.status_code == 401
        fresh = encrypted(message_event("ev-fresh"))
        assert (await http.post(url, content=fresh, headers=signed(fresh, nonce="other"))).status_code == 200
    await eventually(lambda: _received(stack))
    assert [m.message_id for m in stack.butler.received].count("om_ev-replayed") == 1


async def test_rejections_are_logged_once_per_connector_and_reason_per_interval(stack: Stack) -> None:
    challenge = {"challenge": "ch", "type": "url_verification"}
    async with httpx.AsyncClient() as http:
        for _ in range(150):
            assert (await http.post(callback_url(stack), json=challenge)).status_code == 403
    # Each refusal was answered after its log decision: one entry stands for all 150.
    [entry] = await stack.logs(action="callback_rejected")
    assert entry["detail"]["repeats_not_logged"] == 0


async def test_the_next_entry_counts_the_rejections_not_logged(stack: Stack) -> None:
    # A second server on the same database with a short interval, so a second window opens within the test.
    settings = _another_instance(stack, feishu_callback_reject_log_seconds=0.3)
    async with serve_echocenter(settings, RecordingButler()) as other, httpx.AsyncClient() as http:
        url = f"{other.url}/api/integrations/feishu/callback/{stack.connector_id}"

        async def second_entry() -> list[dict[str, Any]] | None:
            assert (await http.post(url, json={"type": "url_verification"})).status_code == 403
            entries = [
                e for e in await stack.logs(action="callback_rejected") if "repeats_not_logged" in e["detail"]
            ]
            return entries if len(entries) >= 2 else None

        newest = (await eventually(second_entry))[0]
    assert newest["detail"]["repeats_not_logged"] >= 1


async def test_deeply_nested_json_is_a_400_before_authentication(stack: Stack) -> None:
    await use_callback(stack)
    second = await stack.api.post(
        "/api/integrations/feishu", json={"connector_name": "Second", "app_id": "cli_second0001"}
    )
    assert second.status_code == 201
    nested = b"[" * 60_000  # far past json's recursion limit, under the test server's 64 KiB body limit
    async with httpx.AsyncClient() as http:
        for url in (callback_url(stack), f"{stack.server.url}/api/integrations/feishu/callback"):
            response = await http.post(url, content=nested, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (url, response.text)
            assert response.json()["error"]["code"] == "invalid_request"


async def test_a_logs_cursor_beyond_bigint_is_a_400(stack: Stack) -> None:
    response = await stack.api.get(
        f"/api/integrations/feishu/{stack.connector_id}/logs", params={"cursor": "9999999999999999999"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    largest = await stack.api.get(
        f"/api/integrations/feishu/{stack.connector_id}/logs", params={"cursor": str(2**63 - 1)}
    )
    assert largest.status_code == 200 and largest.json()["items"]


async def test_tokens_are_compared_whole(stack: Stack) -> None:
    url = await use_callback(stack, key="")
    async with httpx.AsyncClient() as http:
        for token in (TOKEN[:-1], TOKEN + "x", "", TOKEN.upper()):
            body = {"challenge": "c", "token": token, "type": "url_verification"}
            assert (await http.post(url, json=body)).status_code == 401
    assert KEY not in json.dumps(await stack.logs()) and TOKEN not in json.dumps(await stack.logs())
