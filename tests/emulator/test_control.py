from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.emulator import RawPeer, RunningEmulator, raw_peer

CARD = {
    "config": {"update_multi": True},
    "header": {"template": "orange", "title": {"tag": "plain_text", "content": "Run uptime on demo-agent?"}},
    "elements": [
        {"tag": "markdown", "content": "**command** `uptime`"},
        {
            "tag": "action",
            "actions": [
                {
                    "tag": "button",
                    "type": "primary",
                    "text": {"tag": "plain_text", "content": "Approve"},
                    "value": {"approval_id": "7", "decision": "approve"},
                },
                {
                    "tag": "button",
                    "type": "danger",
                    "text": {"tag": "plain_text", "content": "Reject"},
                    "value": {"approval_id": "7", "decision": "reject"},
                },
            ],
        },
    ],
}


pytestmark = pytest.mark.emulator(ack_timeout_seconds=0.5, card_response_timeout_seconds=0.8)


async def bot_card(emu: RunningEmulator) -> str:
    return await emu.bot_sends_card(CARD)


async def answer_next_click(peer: RawPeer, response: Any, code: int = 200) -> dict[str, Any]:
    frame, event = await peer.next_event()
    await peer.ack(frame, response, code=code)
    return event


async def test_a_click_carries_the_button_value_and_the_response_replaces_the_card(
    emu: RunningEmulator,
) -> None:
    message_id = await bot_card(emu)
    decided = {"header": {"title": {"tag": "plain_text", "content": "Rejected by Bob"}}, "elements": []}
    async with raw_peer(emu.http) as peer:
        answer = asyncio.create_task(
            answer_next_click(
                peer,
                {"toast": {"type": "info", "content": "Rejected"}, "card": {"type": "raw", "data": decided}},
            )
        )
        click = await emu.control(
            "POST", "/cards/click", {"message_id": message_id, "operator": "ou_bob", "button": "Reject"}
        )
        event = await answer
    assert event["header"]["event_type"] == "card.action.trigger"
    trigger = event["event"]
    assert trigger["action"]["value"] == {"approval_id": "7", "decision": "reject"}
    assert trigger["operator"]["open_id"] == "ou_bob" and trigger["operator"]["user_id"] == "bob"
    assert trigger["context"] == {"open_message_id": message_id, "open_chat_id": "oc_ops"}
    assert trigger["token"].startswith("c-")
    assert (click["status"], click["toast"]["content"], click["card_updated"]) == (
        "answered",
        "Rejected",
        True,
    )
    stored = (await emu.control("GET", "/chats/oc_ops/messages"))["items"][-1]
    assert stored["content"] == decided


async def test_a_click_nobody_answers_times_out(emu: RunningEmulator) -> None:
    message_id = await bot_card(emu)
    click = await emu.control("POST", "/cards/click", {"message_id": message_id, "operator": "ou_alice"})
    assert (click["status"], click["error_code"]) == ("timeout", 200340)
    stored = (await emu.control("GET", "/chats/oc_ops/messages"))["items"][-1]
    assert stored["content"] == CARD and stored["updated"] is False


async def test_a_failed_handler_is_reported_as_an_error(emu: RunningEmulator) -> None:
    message_id = await bot_card(emu)
    async with raw_peer(emu.http) as peer:
        answer = asyncio.create_task(answer_next_click(peer, None, code=500))
        click = await emu.control("POST", "/cards/click", {"message_id": message_id, "operator": "ou_alice"})
        await answer
    assert (click["status"], click["ack_code"]) == ("error", 500)


async def test_the_delayed_update_token_updates_the_card_twice_at_most(emu: RunningEmulator) -> None:
    message_id = await bot_card(emu)
    async with raw_peer(emu.http) as peer:
        answer = asyncio.create_task(answer_next_click(peer, {}))
        await emu.control("POST", "/cards/click", {"message_id": message_id, "operator": "ou_alice"})
        event = await answer
    token = await emu.token()
    update = {
        "token": event["event"]["token"],
        "card": {"elements": [{"tag": "markdown", "content": "done"}]},
    }
    url = "/open-apis/interactive/v1/card/update"
    auth = {"Authorization": f"Bearer {token}"}
    codes = [(await emu.http.post(url, json=update, headers=auth)).json()["code"] for _ in range(3)]
    assert codes == [0, 0, 230001]


async def test_post_messages_threads_and_mentions(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        first = await emu.control(
            "POST",
            "/messages",
            {
                "chat_id": "oc_ops",
                "sender": "ou_bob",
                "text": "deploy",
                "message_type": "post",
                "post_title": "Ops",
                "mention_bot": True,
                "mentions": ["ou_alice"],
            },
        )
        frame, event = await peer.next_event()
        await peer.ack(frame)
        message = event["event"]["message"]
        content = json.loads(message["content"])
        assert message["message_type"] == "post" and content["title"] == "Ops"
        assert [p["tag"] for p in content["content"][0]] == ["at", "at", "text"]
        assert [m["key"] for m in message["mentions"]] == ["@_user_1", "@_user_2"]
        assert message["mentions"][1]["id"]["open_id"] == "ou_alice"
        await emu.control(
            "POST",
            "/messages",
            {
                "chat_id": "oc_ops",
                "sender": "ou_alice",
                "text": "in thread",
                "thread_of": first["message_id"],
            },
        )
        frame, event = await peer.next_event()
        await peer.ack(frame)
        threaded = event["event"]["message"]
        assert threaded["root_id"] == threaded["parent_id"] == first["message_id"]
        assert threaded["thread_id"].startswith("omt_")
        assert threaded["chat_type"] == "group" and threaded["mentions"] == []


async def test_apps_users_and_chats_can_be_added(emu: RunningEmulator) -> None:
    app = await emu.control("POST", "/apps", {"app_id": "cli_second", "app_secret": "second-secret"})
    user = await emu.control("POST", "/users", {"name": "Carol"})
    chat = await emu.control("POST", "/chats", {"name": "War room", "members": [user["open_id"]]})
    assert app["app_id"] == "cli_second" and user["open_id"].startswith("ou_")
    token = await emu.token("cli_second", "second-secret")
    assert token
    async with raw_peer(emu.http, "cli_second", "second-secret") as peer:
        await emu.control(
            "POST",
            "/messages",
            {"chat_id": chat["chat_id"], "sender": user["open_id"], "text": "hi", "app_id": "cli_second"},
        )
        frame, event = await peer.next_event()
        assert event["header"]["app_id"] == "cli_second"
        await peer.ack(frame)
    state = await emu.control("GET", "/state")
    assert "app_secret" not in json.dumps(state["apps"])


async def test_raw_events_can_be_malformed(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        await emu.control("POST", "/events", {"payload": "{not json"})
        frame = await peer.next_frame()
        assert frame.payload == b"{not json"
        await peer.ack(frame)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/messages", {"chat_id": "oc_ops", "sender": "ou_nobody", "text": "x"}, 404),
        ("/messages", {"chat_id": "oc_none", "sender": "ou_alice", "text": "x"}, 404),
        ("/messages", {"chat_id": "oc_ops", "sender": "ou_alice", "bogus": 1}, 400),
        ("/cards/click", {"message_id": "om_none", "operator": "ou_alice"}, 404),
        ("/faults", {"fail_next_sends": {"count": 0}}, 400),
    ],
)
async def test_control_api_rejects_bad_requests(
    emu: RunningEmulator, path: str, body: Any, status: int
) -> None:
    response = await emu.http.post(f"/control{path}", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"]


async def test_reset_restores_the_default_tenant(emu: RunningEmulator) -> None:
    await emu.control("POST", "/users", {"name": "Temp"})
    await emu.control("POST", "/reset")
    state = await emu.control("GET", "/state")
    assert sorted(u["name"] for u in state["users"] if not u["is_bot"]) == ["Alice", "Bob"]
    assert (await emu.control("GET", "/counters"))["counters"] == {}


async def test_the_chat_page_is_served(emu: RunningEmulator) -> None:
    page = await emu.http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/control/cards/click" in page.text
