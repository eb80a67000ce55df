from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator

MESSAGES = "/open-apis/im/v1/messages"


pytestmark = pytest.mark.emulator(ack_timeout_seconds=0.3)


async def send(
    emu: RunningEmulator, token: str, body: dict[str, Any], receive_id_type: str = "chat_id"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await emu.http.post(
        MESSAGES,
        params={"receive_id_type": receive_id_type},
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code, response.json(), dict(response.headers)


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"receive_id": "oc_ops", "msg_type": "text", "content": json.dumps({"text": value}), **extra}


async def test_tenant_token_for_a_known_app_and_errors_for_others(emu: RunningEmulator) -> None:
    url = "/open-apis/auth/v3/tenant_access_token/internal"
    ok = (await emu.http.post(url, json={"app_id": APP_ID, "app_secret": APP_SECRET})).json()
    assert ok["code"] == 0 and ok["expire"] == 7200 and ok["tenant_access_token"].startswith("t-")
    again = (await emu.http.post(url, json={"app_id": APP_ID, "app_secret": APP_SECRET})).json()
    assert again["tenant_access_token"] == ok["tenant_access_token"]  # still > 30 min left: the same token
    wrong = (await emu.http.post(url, json={"app_id": APP_ID, "app_secret": "nope"})).json()
    assert (wrong["code"], wrong["msg"]) == (10014, "app secret invalid")
    unknown = (await emu.http.post(url, json={"app_id": "cli_nobody", "app_secret": "x"})).json()
    assert unknown["code"] == 10003
    # The official SDK posts it without a Content-Type header.
    bare = await emu.http.post(url, content=json.dumps({"app_id": APP_ID, "app_secret": APP_SECRET}).encode())
    assert bare.json()["code"] == 0


async def test_bot_info_names_the_bots_open_id(emu: RunningEmulator) -> None:
    token = await emu.token()
    body = (await emu.http.get("/open-apis/bot/v3/info", headers={"Authorization": f"Bearer {token}"})).json()
    assert body["code"] == 0 and body["bot"]["open_id"] == emu.world.apps[APP_ID].bot_open_id


async def test_tokens_are_required_and_checked(emu: RunningEmulator) -> None:
    missing = await emu.http.post(MESSAGES, params={"receive_id_type": "chat_id"}, json=text("hi"))
    assert missing.json()["code"] == 99991661
    _, bad, _ = await send(emu, "t-forged", text("hi"))
    assert bad["code"] == 99991663
    token = await emu.token()
    await emu.control("POST", "/faults", {"invalidate_tokens": True})
    assert (await send(emu, token, text("hi")))[1]["code"] == 99991663
    fresh = await emu.token()
    assert fresh != token and (await send(emu, fresh, text("hi")))[1]["code"] == 0
    await emu.control("POST", "/faults", {"refuse_tokens": True})
    assert (await send(emu, fresh, text("hi")))[1]["code"] == 99991663
    await emu.control("POST", "/faults", {"refuse_tokens": False})
    assert (await send(emu, fresh, text("hi")))[1]["code"] == 0
    sent = (await emu.control("GET", "/sent"))["chats"]["oc_ops"]
    assert len(sent) == 2  # refused sends stored nothing


async def test_text_post_and_cards_are_stored_per_chat(emu: RunningEmulator) -> None:
    token = await emu.token()
    post = {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "rich"}]]}}
    card = {"config": {"update_multi": True}, "elements": [{"tag": "markdown", "content": "**hi**"}]}
    for msg_type, content in (("text", {"text": "plain"}), ("post", post), ("interactive", card)):
        status, body, _ = await send(
            emu, token, {"receive_id": "oc_ops", "msg_type": msg_type, "content": json.dumps(content)}
        )
        assert (status, body["code"]) == (200, 0)
        assert body["data"]["message_id"].startswith("om_") and body["data"]["chat_id"] == "oc_ops"
    to_alice = await send(emu, token, text("dm", receive_id="ou_alice"), receive_id_type="open_id")
    assert to_alice[1]["data"]["chat_id"] == "oc_p2p_alice"
    sent = (await emu.control("GET", "/sent"))["chats"]
    assert [m["msg_type"] for m in sent["oc_ops"]] == ["text", "post", "interactive"]
    assert sent["oc_p2p_alice"][0]["content"] == {"text": "dm"}


@pytest.mark.parametrize(
    ("body", "params", "code"),
    [
        (text("hi"), {"receive_id_type": "email_or_what"}, 99992402),
        (text("hi", receive_id="oc_nowhere"), {"receive_id_type": "chat_id"}, 230001),
        (
            {"receive_id": "oc_ops", "msg_type": "audio", "content": "{}"},
            {"receive_id_type": "chat_id"},
            230001,
        ),
        (
            {"receive_id": "oc_ops", "msg_type": "text", "content": {"text": "not a string"}},
            {"receive_id_type": "chat_id"},
            99992402,
        ),
        (
            {"receive_id": "oc_ops", "msg_type": "text", "content": "{broken"},
            {"receive_id_type": "chat_id"},
            230001,
        ),
        (text("x" * (150 * 1024)), {"receive_id_type": "chat_id"}, 230025),
        (
            {
                "receive_id": "oc_ops",
                "msg_type": "interactive",
                "content": json.dumps({"elements": [{"tag": "markdown", "content": "y" * 31000}]}),
            },
            {"receive_id_type": "chat_id"},
            230025,
        ),
    ],
)
async def test_bad_sends_get_feishu_codes_and_store_nothing(
    emu: RunningEmulator, body: dict[str, Any], params: dict[str, str], code: int
) -> None:
    token = await emu.token()
    response = await emu.http.post(
        MESSAGES, params=params, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json()["code"] == code
    assert (await emu.control("GET", "/sent"))["chats"] == {}


async def test_uuid_makes_a_create_idempotent(emu: RunningEmulator) -> None:
    token = await emu.token()
    first = (await send(emu, token, text("once", uuid="u-123")))[1]
    second = (await send(emu, token, text("once", uuid="u-123")))[1]
    other = (await send(emu, token, text("once", uuid="u-456")))[1]
    assert first["data"]["message_id"] == second["data"]["message_id"] != other["data"]["message_id"]
    assert len((await emu.control("GET", "/sent"))["chats"]["oc_ops"]) == 2
    too_long = (await send(emu, token, text("x", uuid="u" * 51)))[1]
    assert too_long["code"] == 99992402


async def test_send_failure_faults_then_success(emu: RunningEmulator) -> None:
    token = await emu.token()
    await emu.control("POST", "/faults", {"fail_next_sends": {"count": 1, "kind": "5xx"}})
    await emu.control(
        "POST", "/faults", {"fail_next_sends": {"count": 1, "kind": "rate_limit", "reset_seconds": 2}}
    )
    status, body, _ = await send(emu, token, text("a", uuid="retry-1"))
    assert status == 500
    status, body, headers = await send(emu, token, text("a", uuid="retry-1"))
    assert (status, body["code"], headers["x-ogw-ratelimit-reset"]) == (429, 99991400, "2")
    status, body, _ = await send(emu, token, text("a", uuid="retry-1"))
    assert (status, body["code"]) == (200, 0)
    assert len((await emu.control("GET", "/sent"))["chats"]["oc_ops"]) == 1
    assert (await emu.control("GET", "/counters"))["counters"]["fault.send_failure"] == 2


async def test_reply_in_thread_and_card_patch(emu: RunningEmulator) -> None:
    token = await emu.token()
    auth = {"Authorization": f"Bearer {token}"}
    user_message = await emu.control(
        "POST", "/messages", {"chat_id": "oc_ops", "sender": "ou_alice", "text": "hi", "mention_bot": True}
    )
    reply = (
        await emu.http.post(
            f"{MESSAGES}/{user_message['message_id']}/reply",
            headers=auth,
            json={"msg_type": "text", "content": json.dumps({"text": "hello"}), "reply_in_thread": True},
        )
    ).json()
    assert reply["code"] == 0
    assert reply["data"]["parent_id"] == reply["data"]["root_id"] == user_message["message_id"]
    assert reply["data"]["thread_id"].startswith("omt_")
    missing = (
        await emu.http.post(
            f"{MESSAGES}/om_nothing/reply",
            headers=auth,
            json={"msg_type": "text", "content": json.dumps({"text": "x"})},
        )
    ).json()
    assert missing["code"] == 230001

    card = {"config": {"update_multi": True}, "elements": [{"tag": "markdown", "content": "pending"}]}
    sent = (
        await send(
            emu, token, {"receive_id": "oc_ops", "msg_type": "interactive", "content": json.dumps(card)}
        )
    )[1]["data"]
    card["elements"][0]["content"] = "approved"
    patched = await emu.http.patch(
        f"{MESSAGES}/{sent['message_id']}", headers=auth, json={"content": json.dumps(card)}
    )
    assert patched.json()["code"] == 0
    stored = (await emu.control("GET", "/chats/oc_ops/messages"))["items"][-1]
    assert (stored["content"]["elements"][0]["content"], stored["updated"]) == ("approved", True)
    not_card = await emu.http.patch(
        f"{MESSAGES}/{reply['data']['message_id']}", headers=auth, json={"content": json.dumps({"text": "x"})}
    )
    assert not_card.json()["code"] == 230001


async def test_the_contact_api_names_users_and_refuses_without_a_contact_scope(emu: RunningEmulator) -> None:
    from echocenter.emulator.openapi import CONTACT_SCOPES

    headers = {"Authorization": f"Bearer {await emu.token()}"}
    url = "/open-apis/contact/v3/users/ou_bob"
    found = (await emu.http.get(url, params={"user_id_type": "open_id"}, headers=headers)).json()
    assert found["code"] == 0 and found["data"]["user"]["name"] == "Bob"
    by_user_id = (
        await emu.http.get(
            "/open-apis/contact/v3/users/bob", params={"user_id_type": "user_id"}, headers=headers
        )
    ).json()
    assert by_user_id["data"]["user"]["open_id"] == "ou_bob"
    unknown = (await emu.http.get("/open-apis/contact/v3/users/ou_nobody", headers=headers)).json()
    assert unknown["code"] == 41050
    await emu.control("PATCH", f"/apps/{APP_ID}", {"missing_scopes": list(CONTACT_SCOPES)})
    refused = await emu.http.get(url, params={"user_id_type": "open_id"}, headers=headers)
    assert refused.status_code == 400 and refused.json()["code"] == 99991672
    assert "contact:user.base:readonly" in refused.json()["msg"]
