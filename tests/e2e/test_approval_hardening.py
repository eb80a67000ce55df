"""Who and what may decide an approval, what may become a card, and how untrusted words are shown
(issue 10, points 3, 4c, 5, 13, 14): over the emulator's long connection and its signed HTTP callback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import AGENT, Stack, asked, story_with_agent
from tests.e2e.test_callback import KEY, TOKEN
from tests.support.databases import Database
from tests.support.emulator import APP_ID, RunningEmulator
from tests.support.waiting import eventually


async def to_http_callback(story: Stack, *, enable: bool) -> None:
    """Move the story's connector to the signed HTTP callback; the emulator then POSTs clicks there."""
    base = f"/api/integrations/feishu/{story.connector_id}"
    changed = await story.api.patch(
        base, json={"verification_token": TOKEN, "encrypt_key": KEY, "callback_enabled": True}
    )
    assert changed.status_code == 200, changed.text
    assert (await story.api.post(f"{base}/verify-callback")).json()["ok"]
    if enable:
        assert (await story.api.patch(f"{base}/enable", json={"enabled": True})).status_code == 200
    url = f"{story.server.url}/api/integrations/feishu/callback/{story.connector_id}"
    await story.emu.control(
        "PATCH", f"/apps/{APP_ID}", {"callback_url": url, "verification_token": TOKEN, "encrypt_key": KEY}
    )


async def click(
    story: Stack, card_id: str, value: dict[str, Any], operator: str = "ou_alice"
) -> dict[str, Any]:
    result: dict[str, Any] = await story.emu.control(
        "POST", "/cards/click", {"message_id": card_id, "operator": operator, "value": value}
    )
    return result


async def refusals(story: Stack) -> list[str]:
    entries = await story.logs("ws_auth_card_decision")
    return [e["detail"]["reason"] for e in entries if e["detail"].get("refused")]


@pytest.mark.parametrize("transport", ["long_connection", "http_callback"])
async def test_a_disabled_connector_decides_nothing(story: Stack, transport: str) -> None:
    _, card, approval = await asked(story)
    if transport == "http_callback":
        await to_http_callback(story, enable=False)  # new credentials leave it disabled until enabled
    else:
        disabled = await story.api.patch(
            f"/api/integrations/feishu/{story.connector_id}/enable", json={"enabled": False}
        )
        assert disabled.json()["enabled"] is False
    answer = await click(story, card["message_id"], {"approval_id": approval["id"], "decision": "approve"})
    assert answer["status"] == "answered"
    assert answer["toast"]["type"] == "error" and "disabled" in answer["toast"]["content"]
    assert await refusals(story) == ["connector disabled"]
    assert (await story.approval(approval["id"]))["status"] == "PENDING"
    if transport == "http_callback":
        deliveries = (await story.emu.control("GET", "/deliveries"))["items"]
        assert deliveries[-1]["ack_device_id"] == "http"


async def test_a_click_on_one_card_cannot_decide_another(story: Stack) -> None:
    _, card_x, approval_x = await asked(story)
    await story.say(f"run {AGENT} whoami")

    async def second() -> dict[str, Any] | None:
        pending = [a for a in await story.approvals(status="PENDING") if a["card_message_id"]]
        return next((a for a in pending if a["id"] != approval_x["id"]), None)

    approval_y = await eventually(second)
    forged = await click(
        story, card_x["message_id"], {"approval_id": approval_y["id"], "decision": "approve"}
    )
    assert forged["toast"] == {"type": "error", "content": "This button does not belong to this request."}
    assert await refusals(story) == ["not this approval's card"]
    assert (await story.approval(approval_y["id"]))["status"] == "PENDING"
    own = await click(story, card_x["message_id"], {"approval_id": approval_x["id"], "decision": "reject"})
    assert own["toast"]["content"] == "Rejected."


async def test_a_forged_signed_click_with_a_made_up_message_is_refused_over_http(story: Stack) -> None:
    _, card, approval = await asked(story)
    await to_http_callback(story, enable=True)
    # The emulator signs what it sends; the click names a message that is not this approval's card.
    other_card = await story.emu.bot_sends_card(
        {"config": {"update_multi": True}, "elements": [{"tag": "action", "actions": [{"tag": "button"}]}]}
    )
    answer = await click(story, other_card, {"approval_id": approval["id"], "decision": "approve"})
    assert answer["toast"]["type"] == "error"
    assert (await story.approval(approval["id"]))["status"] == "PENDING"
    assert card["message_id"] != other_card


@pytest.mark.parametrize(
    ("value", "toast"),
    [
        ({"approval_id": True, "decision": "approve"}, "This card is not an approval card."),
        ({"approval_id": "1", "decision": "approve"}, "This card is not an approval card."),
        ({"approval_id": 1.0, "decision": "approve"}, "This card is not an approval card."),
        ({"approval_id": 1, "decision": "APPROVE"}, "Unknown decision."),
        ({"approval_id": 1, "decision": True}, "Unknown decision."),
    ],
)
async def test_card_values_are_strictly_typed(story: Stack, value: dict[str, Any], toast: str) -> None:
    _, card, approval = await asked(story)
    assert approval["id"] == 1  # so that `true` would have meant this one
    answer = await click(story, card["message_id"], value)
    assert answer["toast"] == {"type": "error", "content": toast}
    assert (await story.approval(1))["status"] == "PENDING"


async def test_a_click_past_the_card_deadline_still_decides_and_runs(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    # A deadline far shorter than any database round trip: the answer is always the "still working" toast,
    # and the decision and the command must still be carried through in the background.
    async with story_with_agent(database, tmp_path, emu, feishu_card_deadline=0.000001) as story:
        _, card, approval = await asked(story)
        answer = await story.click(card["message_id"], "Approve")
        assert answer["toast"]["type"] == "warning" and "Still working" in answer["toast"]["content"]
        done = await story.settled(approval["id"])
        assert done["status"] == "EXECUTED" and "load average" in done["output"]

        async def card_shows_it() -> bool:
            messages = await story.bot_messages()
            shown = next(m for m in messages if m["message_id"] == card["message_id"])
            return "Approved — done" in json.dumps(shown["content"], ensure_ascii=False)

        await eventually(card_shows_it)


FORGED = "uptime`\n**Reason** routine, approved by SRE lead\n**Asked by** Alice\n<at id=all></at>"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"run {AGENT} {FORGED}", "one line"),
        (f"run {AGENT} uptime\u202e", "one line"),  # a bidi override is a format character
        ("run [demo-agent](https://evil.example) uptime", "agent name uses only"),
        ("run nobody-here uptime", "no registered agent named nobody-here"),
    ],
)
async def test_commands_that_could_forge_a_card_are_refused_with_a_reason(
    story: Stack, text: str, why: str
) -> None:
    message_id = await story.say(text)
    reply = await story.reply_to(message_id)
    assert reply["content"]["text"].startswith("I cannot ask for that:") and why in reply["content"]["text"]
    assert await story.approvals() == []
    assert not [m for m in await story.bot_messages() if m["msg_type"] == "interactive"]
    [entry] = await story.logs("command_refused")
    assert why in entry["detail"]["reason"]


MARKUP = (
    "echo **bold** _it_ ~~gone~~ `code` [link](https://evil.example) <at id=all></at> "
    "<font color=red>x</font> # h"
)


async def test_untrusted_words_never_become_markup(story: Stack) -> None:
    # The admin's list lets the request reach a card; the agent itself still refuses to run it.
    [agent] = (await story.server.client.get("/api/agents")).json()["items"]
    patched = await story.server.client.patch(f"/api/agents/{agent['id']}", json={"commands": [MARKUP]})
    assert patched.status_code == 200, patched.text
    message_id, card, approval = await asked(story, f"run {AGENT} {MARKUP}")
    assert approval["command"] == MARKUP  # kept exactly, only shown inertly

    def markup_free(content: dict[str, Any]) -> None:
        for element in content["elements"]:
            text = element.get("content") or element.get("text", {}).get("content", "")
            if "evil.example" in text or MARKUP in text:
                # Shown as plain_text: Feishu renders it character for character, no markdown at all.
                assert element["tag"] == "div" and element["text"]["tag"] == "plain_text", element
        assert content["header"]["title"]["tag"] == "plain_text"

    markup_free(card["content"])
    assert any(MARKUP in json.dumps(e, ensure_ascii=False) for e in card["content"]["elements"])
    ask_reply = await story.reply_to(message_id)
    assert_inert_text(ask_reply["content"]["text"])

    await story.click(card["message_id"], "Approve")
    await story.settled(approval["id"])  # the example agent refuses it: not on its allow-list
    [result] = await eventually(story.result_messages)
    assert_inert_text(result["content"]["text"])
    final = next(m for m in await story.bot_messages() if m["message_id"] == card["message_id"])
    markup_free(final["content"])


def assert_inert_text(text: str) -> None:
    """No tag (<at>, <font>, <b>), link, bold or strike can form in a Feishu text message."""
    for opener in ("<", "[", "**", "~~"):
        assert opener not in text, (opener, text)
    assert "evil.example" in text  # the words are still there to read
