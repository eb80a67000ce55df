"""The emulator enforces Feishu's documented send quotas: 5/s per chat (230020), 50/s and 1000/min per app and
5/s per message PATCH (HTTP 429, 99991400), each with ``x-ogw-ratelimit-reset``; counted; switchable off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from echocenter.emulator.quotas import SlidingLog
from tests.support.emulator import RunningEmulator

MESSAGES = "/open-apis/im/v1/messages"


pytestmark = pytest.mark.emulator()  # Feishu's own defaults: quotas on


async def post_text(emu: RunningEmulator, token: str, chat_id: str = "oc_ops") -> tuple[int, Any, Any]:
    response = await emu.http.post(
        MESSAGES,
        params={"receive_id_type": "chat_id"},
        headers={"Authorization": f"Bearer {token}"},
        json={"receive_id": chat_id, "msg_type": "text", "content": json.dumps({"text": "hi"})},
    )
    return response.status_code, response.json(), response.headers


async def test_a_sixth_message_in_one_chat_within_a_second_is_refused_with_230020(
    emu: RunningEmulator,
) -> None:
    token = await emu.token()
    answers = [await post_text(emu, token) for _ in range(6)]
    assert [status for status, _, _ in answers[:5]] == [200] * 5
    status, body, headers = answers[5]
    assert (status, body["code"]) == (400, 230020)
    assert int(headers["x-ogw-ratelimit-reset"]) >= 1
    # Another chat has its own budget.
    assert (await post_text(emu, token, "oc_p2p_alice"))[0] == 200
    quotas = await emu.control("GET", "/quotas")
    assert quotas["enabled"] is True
    assert quotas["refusals"] == {"chat_per_second": 1} and quotas["refused_total"] == 1
    sent = (await emu.control("GET", "/chats/oc_ops/messages"))["items"]
    assert len([m for m in sent if m["sender_type"] == "app"]) == 5  # the refused one was not stored


async def test_the_app_quota_answers_429_99991400_across_chats(emu: RunningEmulator) -> None:
    await emu.control("POST", "/config", {"quota_app_per_second": 3})
    token = await emu.token()
    chats = ["oc_ops", "oc_p2p_alice", "oc_p2p_bob", "oc_ops"]
    answers = [await post_text(emu, token, chat) for chat in chats]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    _, body, headers = answers[3]
    assert body["code"] == 99991400 and headers["x-ogw-ratelimit-limit"] == "3"
    assert int(headers["x-ogw-ratelimit-reset"]) >= 1
    assert (await emu.control("GET", "/quotas"))["refusals"] == {"app_per_second": 1}


async def test_the_per_minute_app_quota_holds_over_the_whole_minute(emu: RunningEmulator) -> None:
    await emu.control("POST", "/config", {"quota_app_per_minute": 4, "quota_chat_per_second": 0})
    token = await emu.token()
    statuses = [(await post_text(emu, token))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    _, body, headers = await post_text(emu, token)
    assert body["code"] == 99991400 and int(headers["x-ogw-ratelimit-reset"]) > 50  # a minute's window


async def test_a_card_patch_is_limited_per_message(emu: RunningEmulator) -> None:
    card = {"config": {"update_multi": True}, "elements": []}
    first, second = await emu.bot_sends_card(card), await emu.bot_sends_card(card, "oc_p2p_alice")
    token = await emu.token()

    async def patch(message_id: str) -> tuple[int, Any]:
        response = await emu.http.patch(
            f"{MESSAGES}/{message_id}",
            headers={"Authorization": f"Bearer {token}"},
            json={"content": json.dumps(card)},
        )
        return response.status_code, response.json()

    results = [await patch(first) for _ in range(6)]
    assert [s for s, _ in results] == [200] * 5 + [429] and results[5][1]["code"] == 99991400
    assert (await patch(second))[0] == 200  # another card, another budget
    assert (await emu.control("GET", "/quotas"))["refusals"] == {"message_patch_per_second": 1}


async def test_quotas_switched_off_refuse_nothing_and_reset_clears_counters(emu: RunningEmulator) -> None:
    token = await emu.token()
    for _ in range(6):
        await post_text(emu, token)
    assert (await emu.control("GET", "/quotas"))["refused_total"] == 1
    await emu.control("POST", "/quotas/reset")
    await emu.control("POST", "/config", {"quotas_enabled": False})
    assert {(await post_text(emu, token))[0] for _ in range(20)} == {200}
    quotas = await emu.control("GET", "/quotas")
    assert quotas["enabled"] is False and quotas["refused_total"] == 0


def test_the_sliding_log_counts_any_window_not_calendar_seconds() -> None:
    log = SlidingLog()
    for t in (0.0, 0.5, 0.9):
        assert log.wait_needed("k", 3, 1.0, t) == 0
        log.add("k", t)
    assert log.wait_needed("k", 3, 1.0, 0.95) == pytest.approx(0.05)  # the window [0.0, 1.0) is full
    assert log.wait_needed("k", 3, 1.0, 1.0) == 0  # 0.0 left the window
    assert log.wait_needed("k", 3, 1.0, 1.2) == 0
