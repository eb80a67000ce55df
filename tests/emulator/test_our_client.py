"""Our long-connection client against the emulator, without the rest of the service."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from echocenter.feishu.card_answer import CARD_TIMEOUT_TOAST, answer_within
from echocenter.feishu.longconn.client import LongConnClient, StateChange
from echocenter.feishu.longconn.protocol import ConnState
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.waiting import eventually

CARD = {
    "config": {"update_multi": True},
    "elements": [
        {
            "tag": "action",
            "actions": [{"tag": "button", "text": {"tag": "plain_text", "content": "Go"}, "value": {"x": 1}}],
        }
    ],
}


@pytest.mark.emulator(card_response_timeout_seconds=3.0)
async def test_a_slow_card_handler_is_answered_with_a_toast_before_feishu_gives_up(
    emu: RunningEmulator,
) -> None:
    async with httpx.AsyncClient() as http:
        states: list[ConnState] = []
        handled: list[Any] = []
        finished = asyncio.Event()  # set when the test is over: the handler answers far past the deadline

        async def slow_card(payload: bytes) -> dict[str, Any]:
            handled.append(json.loads(payload)["event"]["action"]["value"])
            await finished.wait()
            return {"toast": {"type": "success", "content": "too late"}}

        async def on_payload(payload: bytes) -> dict[str, Any]:
            return await answer_within(slow_card(payload), deadline=0.5)  # as the bridge answers a card

        async def on_state(change: StateChange) -> None:
            states.append(change.state)

        client = LongConnClient(
            app_id=APP_ID,
            app_secret=APP_SECRET,
            base_url=emu.url,
            http=http,
            on_payload=on_payload,
            on_state=on_state,
        )
        task = asyncio.create_task(client.run())
        try:
            await eventually(lambda: _connected(states))
            card_id = await emu.bot_sends_card(CARD)
            click = await emu.control("POST", "/cards/click", {"message_id": card_id, "operator": "ou_alice"})
            assert click["status"] == "answered"
            assert click["response"] == CARD_TIMEOUT_TOAST
            assert handled == [{"x": 1}]
        finally:
            finished.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert states[:2] == [ConnState.CONNECTING, ConnState.CONNECTED]


async def _connected(states: list[ConnState]) -> bool:
    return ConnState.CONNECTED in states
