"""The emulator's CardKit, reactions and message resources, spoken to over HTTP as Feishu documents them."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.support.emulator import APP_ID, RunningEmulator

CARDS = "/open-apis/cardkit/v1/cards"
CARD = {
    "schema": "2.0",
    "config": {"streaming_mode": True, "update_multi": True},
    "body": {"elements": [{"tag": "markdown", "element_id": "answer", "content": ""}]},
}


async def call(emu: RunningEmulator, method: str, path: str, body: Any = None, **params: str) -> Any:
    token = await emu.token()
    response = await emu.http.request(
        method, path, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
    )
    return response


async def new_card(emu: RunningEmulator) -> str:
    body = (await call(emu, "POST", CARDS, {"type": "card_json", "data": json.dumps(CARD)})).json()
    assert body["code"] == 0, body
    card_id: str = body["data"]["card_id"]
    return card_id


async def put(emu: RunningEmulator, card_id: str, content: str, sequence: int) -> dict[str, Any]:
    body: dict[str, Any] = (
        await call(
            emu,
            "PUT",
            f"{CARDS}/{card_id}/elements/answer/content",
            {"content": content, "sequence": sequence, "uuid": f"u{sequence}"},
        )
    ).json()
    return body


async def test_a_card_entity_streams_with_increasing_sequences_then_closes(emu: RunningEmulator) -> None:
    card_id = await new_card(emu)
    assert (await put(emu, card_id, "Hel", 1))["code"] == 0
    assert (await put(emu, card_id, "Hello", 2))["code"] == 0
    assert (await put(emu, card_id, "Hello!", 2))["code"] == 300317  # not strictly increasing
    closed = await call(
        emu,
        "PATCH",
        f"{CARDS}/{card_id}/settings",
        {"settings": json.dumps({"config": {"streaming_mode": False}}), "sequence": 3, "uuid": "s"},
    )
    assert closed.json()["code"] == 0
    entity = await emu.control("GET", f"/cardkit/{card_id}")
    assert entity["streaming_mode"] is False
    assert entity["card"]["body"]["elements"][0]["content"] == "Hello"
    assert (await put(emu, card_id, "late", 4))["code"] == 300309  # streaming mode is off


async def test_more_than_ten_calls_a_second_on_one_card_are_rate_limited(emu: RunningEmulator) -> None:
    card_id = await new_card(emu)  # the create counts too
    codes = [(await put(emu, card_id, "x" * i, i))["code"] for i in range(1, 11)]
    assert codes[:9] == [0] * 9 and codes[9] == 99991400


async def test_a_card_entity_is_sent_once_only(emu: RunningEmulator) -> None:
    card_id = await new_card(emu)
    content = json.dumps({"type": "card", "data": {"card_id": card_id}})
    body = {"receive_id": "oc_ops", "msg_type": "interactive", "content": content}
    first = (await call(emu, "POST", "/open-apis/im/v1/messages", body, receive_id_type="chat_id")).json()
    assert first["code"] == 0
    again = (await call(emu, "POST", "/open-apis/im/v1/messages", body, receive_id_type="chat_id")).json()
    assert again["code"] == 230099
    view = (await emu.control("GET", "/chats/oc_ops/messages"))["items"][-1]
    assert view["card"]["card_id"] == card_id


async def test_cardkit_without_its_scope_is_refused(emu: RunningEmulator) -> None:
    await emu.control("PATCH", f"/apps/{APP_ID}", {"missing_scopes": ["cardkit:card:write"]})
    body = (await call(emu, "POST", CARDS, {"type": "card_json", "data": json.dumps(CARD)})).json()
    assert body["code"] == 99991672


async def test_reactions_are_added_and_removed_by_id(emu: RunningEmulator) -> None:
    sent = await emu.control("POST", "/messages", {"chat_id": "oc_ops", "sender": "ou_alice", "text": "hi"})
    path = f"/open-apis/im/v1/messages/{sent['message_id']}/reactions"
    bad = (await call(emu, "POST", path, {"reaction_type": {"emoji_type": "NotAnEmoji"}})).json()
    assert bad["code"] == 231001
    added = (await call(emu, "POST", path, {"reaction_type": {"emoji_type": "OnIt"}})).json()
    reaction_id = added["data"]["reaction_id"]
    assert added["data"]["reaction_type"] == {"emoji_type": "OnIt"}
    removed = (await call(emu, "DELETE", f"{path}/{reaction_id}")).json()
    assert removed["code"] == 0
    assert (await call(emu, "DELETE", f"{path}/{reaction_id}")).json()["code"] == 231003
    assert [e["op"] for e in (await emu.control("GET", "/reactions"))["items"]] == ["add", "delete"]


async def test_a_message_resource_is_served_by_key_and_type(emu: RunningEmulator) -> None:
    sent = await emu.control(
        "POST",
        "/messages",
        {
            "chat_id": "oc_p2p_alice",
            "sender": "ou_alice",
            "message_type": "file",
            "file_name": "a.txt",
            "resource_base64": base64.b64encode(b"hello file").decode(),
            "resource_content_type": "text/plain",
        },
    )
    message = emu.world.messages[sent["message_id"]]
    key = json.loads(message.content)["file_key"]
    path = f"/open-apis/im/v1/messages/{message.message_id}/resources/{key}"
    ok = await call(emu, "GET", path, type="file")
    assert ok.status_code == 200 and ok.content == b"hello file"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong_type = await call(emu, "GET", path, type="image")
    assert wrong_type.json()["code"] == 234003
