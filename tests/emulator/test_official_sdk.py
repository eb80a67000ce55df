"""The proof that the emulator speaks Feishu's protocol: the official lark-oapi WS client works against it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.waiting import eventually

pytestmark = pytest.mark.emulator()  # Feishu's own defaults, as the SDK expects them

PEER = Path(__file__).parent.parent / "support" / "lark_sdk_peer.py"


@pytest.fixture
async def sdk_and_emulator(
    emu: RunningEmulator,
) -> AsyncIterator[tuple[RunningEmulator, asyncio.subprocess.Process]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        emu.url,
        APP_ID,
        APP_SECRET,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=str(PEER.parent.parent.parent),
    )
    try:
        # The SDK holds a connection; its process imports lark-oapi first, slow on a busy machine.
        await eventually(lambda: connections(emu), timeout=30)
        yield emu, process
    finally:
        process.kill()
        await process.wait()


async def connections(emu: RunningEmulator) -> list[Any]:
    items: list[Any] = (await emu.control("GET", "/connections"))["items"]
    return items


async def _line(process: asyncio.subprocess.Process, kind: str) -> dict[str, Any]:
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), 60)  # a busy machine is slow
        assert raw, "the SDK process ended"
        if not raw.startswith(b"PEER "):  # the SDK's own log lines
            continue
        line: dict[str, Any] = json.loads(raw[5:])
        if line["kind"] == kind:
            return line


async def test_official_client_pings_receives_a_message_and_acks(
    sdk_and_emulator: tuple[RunningEmulator, asyncio.subprocess.Process],
) -> None:
    emu, process = sdk_and_emulator
    sent = await emu.control(
        "POST",
        "/messages",
        {
            "chat_id": "oc_ops",
            "sender": "ou_alice",
            "text": "hi sdk",
            "mention_bot": True,
            "wait_ack_seconds": 5,
        },
    )
    line = await _line(process, "message")
    assert line["message_id"] == sent["message_id"]
    assert json.loads(line["content"]) == {"text": "@_user_1 hi sdk"}
    delivery = sent["delivery"]
    assert (delivery["acked"], delivery["ack_code"], len(delivery["attempts"])) == (True, 200, 1)
    assert delivery["biz_rt"] is not None  # the SDK added its handler time, as it does for Feishu
    assert (await emu.control("GET", "/counters"))["counters"]["ws.ping"] >= 1


async def test_official_client_answers_a_card_click_in_its_ack(
    sdk_and_emulator: tuple[RunningEmulator, asyncio.subprocess.Process],
) -> None:
    emu, process = sdk_and_emulator
    card = {
        "config": {"update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": "Run uptime?"}},
        "elements": [
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": "Approve"},
                        "type": "primary",
                        "value": {"approval_id": "42", "decision": "approve"},
                    },
                ],
            }
        ],
    }
    card_id = await emu.bot_sends_card(card)
    click = await emu.control(
        "POST",
        "/cards/click",
        {"message_id": card_id, "operator": "ou_alice", "button": "Approve"},
    )
    line = await _line(process, "card")
    assert line == {
        "kind": "card",
        "value": {"approval_id": "42", "decision": "approve"},
        "operator": "ou_alice",
    }
    assert click["status"] == "answered"
    assert click["toast"] == {"type": "success", "content": "Approved by the SDK"}
    assert click["card_updated"] is True
    stored = (await emu.control("GET", "/chats/oc_ops/messages"))["items"][-1]
    assert stored["content"]["header"]["title"]["content"] == "Approved"
