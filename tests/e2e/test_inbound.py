"""Feishu messages over the long connection, through the pipeline, to the Butler (issue 4's story)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from echocenter.emulator.events import message_receive
from echocenter.emulator.state import Message, new_id, now_ms
from tests.e2e.harness import Stack, create_verified_connector, e2e_settings, serve_echocenter
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.recording_butler import RecordingButler
from tests.support.waiting import eventually


async def routed(stack: Stack, count: int = 1) -> list[Any]:
    async def enough() -> list[Any] | None:
        return stack.butler.received if len(stack.butler.received) >= count else None

    return await eventually(enough)


async def filtered(stack: Stack, reason: str) -> None:
    async def seen() -> bool:
        return reason in await stack.filtered_reasons()

    await eventually(seen)


async def test_a_mention_reaches_the_butler_with_the_feishu_identity(stack: Stack) -> None:
    sent = await stack.deliver("  status\u00a0please ")
    [message] = await routed(stack)
    assert message.text == "status please"
    assert (message.open_id, message.user_id, message.chat_id, message.chat_type) == (
        "ou_alice",
        "alice",
        "oc_ops",
        "group",
    )
    assert message.message_id == sent["message_id"] and message.connector_id == stack.connector_id
    entry = (await stack.logs(action="ws_routed"))[0]
    assert entry["detail"]["message_id"] == sent["message_id"] and entry["detail"]["transport"] == "ws"
    connector = await stack.connector()
    assert connector["status"] == "connected" and connector["last_event_at"] is not None
    actions = {e["action"] for e in await stack.logs()}
    assert {"ws_connecting", "ws_connected", "ws_routed"} <= actions


async def test_threads_are_kept(stack: Stack) -> None:
    first = await stack.deliver("root")
    await routed(stack)
    await stack.say("in thread", thread_of=first["message_id"])
    _, threaded = await routed(stack, 2)
    assert threaded.root_id == first["message_id"] and threaded.thread_id.startswith("omt_")


@pytest.mark.parametrize(
    ("settings", "message", "reason"),
    [
        ({}, {"mention_bot": False}, "mention_required"),
        ({"allow_group_mention": False}, {}, "group_message_disabled"),
        ({"allow_dm": False}, {"chat_id": "oc_p2p_alice", "mention_bot": False}, "dm_disabled"),
        ({"allowed_chat_ids": ["oc_elsewhere"]}, {}, "chat_not_allowed"),
        ({"user_whitelist": ["ou_bob"]}, {}, "user_not_whitelisted"),
        ({"prefix_command": "/bot"}, {"text": "hello"}, "prefix_not_matched"),
        ({}, {"text": "   "}, "empty_text"),
        ({}, {"sender": "ou_bot_emulator0001"}, "bot_message_ignored"),
    ],
)
async def test_each_rule_filters_with_its_reason(
    stack: Stack, settings: dict[str, Any], message: dict[str, Any], reason: str
) -> None:
    if settings:
        await stack.patch(**settings)
    sent = await stack.deliver(**{"text": "hello", **message})
    await filtered(stack, reason)
    entry = (await stack.logs(action="ws_filtered"))[0]
    assert entry["detail"]["message_id"] == sent["message_id"]
    assert stack.butler.received == []


async def test_the_rules_let_through_what_they_allow(stack: Stack) -> None:
    await stack.patch(
        prefix_command="/bot", user_whitelist=["alice"], allowed_chat_ids=["oc_ops", "oc_p2p_alice"]
    )
    await stack.say("/bot run demo uptime")
    await stack.say("/BOT status", chat_id="oc_p2p_alice", mention_bot=False)
    received = await routed(stack, 2)
    assert sorted((m.text, m.chat_type) for m in received) == [
        ("run demo uptime", "group"),
        ("status", "p2p"),
    ]


async def test_a_disabled_connector_filters_everything(stack: Stack) -> None:
    await stack.api.patch(f"/api/integrations/feishu/{stack.connector_id}/enable", json={"enabled": False})
    await stack.say("hello")
    await filtered(stack, "connector_disabled")
    assert stack.butler.received == []


async def test_the_rate_limit_is_per_sender_and_logged(stack: Stack) -> None:
    await stack.patch(rate_limit_per_minute=2)
    for i in range(3):
        await stack.say(f"m{i}", wait_ack_seconds=5)  # one at a time, so which one is third is certain
    await stack.say("from bob", sender="ou_bob")
    await filtered(stack, "rate_limited")
    received = await routed(stack, 3)
    assert [m.text for m in received] == ["m0", "m1", "from bob"]
    entry = (await stack.logs(action="ws_filtered"))[0]
    assert entry["detail"]["limit_per_minute"] == 2 and entry["detail"]["sender_open_id"] == "ou_alice"


def _event_for(emu: RunningEmulator, message_id: str, text: str = "@_user_1 again") -> dict[str, Any]:
    world = emu.world
    app = next(iter(world.apps.values()))
    bot = world.users[app.bot_open_id]
    content = json.dumps({"text": text})
    message = Message(
        message_id,
        "oc_ops",
        "ou_alice",
        "user",
        "text",
        content,
        now_ms(),
        mentions=[
            {
                "key": "@_user_1",
                "id": {"open_id": bot.open_id, "user_id": "", "union_id": ""},
                "name": bot.name,
                "tenant_key": app.tenant_key,
            }
        ],
    )
    return message_receive(app, world.users["ou_alice"], world.chats["oc_ops"], message)


async def test_a_message_is_routed_once_even_across_a_reconnect(stack: Stack) -> None:
    event = _event_for(stack.emu, new_id("om_"))
    await stack.emu.control("POST", "/events", {"payload": event})
    await routed(stack)
    await stack.emu.control("POST", "/faults", {"drop_connections": True})
    await eventually(lambda: _has_log(stack, "ws_disconnected"))
    await stack.wait_connected()
    await eventually(lambda: _connections(stack.emu))
    await stack.emu.control("POST", "/events", {"payload": event})  # Feishu pushing it again
    await eventually(lambda: _acked_all(stack.emu))
    # Acked means admitted or refused (claim before ack): an admission would have logged ws_routed with it.
    assert len(await stack.logs("ws_routed")) == 1
    assert len(stack.butler.received) == 1
    assert "duplicate" not in await stack.filtered_reasons()  # duplicates are silent


async def _has_log(stack: Stack, action: str) -> bool:
    return bool(await stack.logs(action=action))


async def _connections(emu: RunningEmulator) -> list[Any]:
    items: list[Any] = (await emu.control("GET", "/connections"))["items"]
    return items


async def _acked_all(emu: RunningEmulator) -> bool:
    items = (await emu.control("GET", "/deliveries"))["items"]
    return all(d["acked"] for d in items)


async def test_a_failed_routing_lets_the_redelivery_through(stack: Stack) -> None:
    stack.butler.fail_next = 1
    event = _event_for(stack.emu, new_id("om_"))
    await stack.emu.control("POST", "/events", {"payload": event})
    await eventually(lambda: _has_log(stack, "ws_client_error"))
    assert stack.butler.received == []
    await stack.emu.control("POST", "/events", {"payload": event})
    [message] = await routed(stack)
    assert message.message_id == event["event"]["message"]["message_id"]


async def test_dedup_survives_a_service_restart(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    event = _event_for(emu, new_id("om_"))
    settings = e2e_settings(database, tmp_path, emu.url)
    first = RecordingButler()
    async with serve_echocenter(settings, first) as server:
        connector_id = await create_verified_connector(server, prefix_command="")
        stack = Stack(server, emu, connector_id, first)
        await stack.wait_connected()
        await emu.control("POST", "/events", {"payload": event})
        await routed(stack)
    second = RecordingButler()
    async with serve_echocenter(settings, second) as server:
        stack = Stack(server, emu, connector_id, second)
        await stack.wait_connected()
        await eventually(lambda: _connections(emu))
        await emu.control("POST", "/events", {"payload": event})
        await eventually(lambda: _acked_all(emu))
        fresh = await emu.control(
            "POST",
            "/messages",
            {"chat_id": "oc_ops", "sender": "ou_alice", "text": "new", "mention_bot": True},
        )
        [message] = await routed(stack)
        assert message.message_id == fresh["message_id"]  # the old one was not routed again


async def test_reconnects_after_the_emulator_drops_the_connection(stack: Stack) -> None:
    await stack.emu.control("POST", "/faults", {"drop_connections": True})
    await eventually(lambda: _has_log(stack, "ws_disconnected"))
    await stack.wait_connected()
    await stack.say("after the drop")
    [message] = await routed(stack)
    assert message.text == "after the drop"
    connected = await stack.logs(action="ws_connected")
    assert len(connected) >= 2


async def test_a_fatal_handshake_refusal_shows_in_status_and_logs(stack: Stack) -> None:
    await stack.emu.control(
        "POST",
        "/faults",
        {
            "refuse_handshakes": {"status": 514, "msg": "exceed connection limit", "autherrcode": 1000040350},
            "drop_connections": True,
        },
    )

    async def errored() -> dict[str, Any] | None:
        connector = await stack.connector()
        return connector if connector["status"] == "error" else None

    connector = await eventually(errored)
    assert "exceed connection limit" in connector["last_error"]
    entry = (await eventually(lambda: stack.logs("ws_client_error")))[0]  # the entry may follow the status
    assert entry["level"] == "error" and entry["detail"]["fatal"] is True
    await stack.emu.control("POST", "/faults", {"refuse_handshakes": {}})
    await stack.wait_connected()  # and it came back once Feishu accepted it again


async def test_multi_part_frames_are_joined(stack: Stack) -> None:
    await stack.emu.control("POST", "/config", {"fragment_bytes": 64})
    await stack.say("long " * 100)
    [message] = await routed(stack)
    assert message.text == " ".join(["long"] * 100)


async def test_unknown_and_malformed_events_are_logged_and_the_connection_lives(stack: Stack) -> None:
    await stack.emu.control(
        "POST",
        "/events",
        {
            "payload": {
                "schema": "2.0",
                "header": {
                    "event_id": "e-unknown",
                    "event_type": "im.chat.member.bot.added_v1",
                    "app_id": "cli_emulator0001",
                },
                "event": {},
            }
        },
    )
    await stack.emu.control("POST", "/events", {"payload": "{this is not json"})
    await stack.emu.control(
        "POST",
        "/events",
        {
            "payload": {
                "schema": "2.0",
                "header": {"event_type": "im.message.receive_v1"},
                "event": {"message": "not an object"},
            }
        },
    )
    await eventually(lambda: _has_log(stack, "ws_event_ignored"))
    await eventually(lambda: _count_log(stack, "ws_client_error", 2))
    await eventually(lambda: _acked_all(stack.emu))
    await stack.say("still here")
    [message] = await routed(stack)
    assert message.text == "still here"
    assert len(await stack.logs(action="ws_connected")) == 1  # never reconnected


async def _count_log(stack: Stack, action: str, count: int) -> bool:
    return len(await stack.logs(action=action)) >= count


async def test_unsupported_message_types_are_filtered(stack: Stack) -> None:
    event = _event_for(stack.emu, new_id("om_"))
    event["event"]["message"]["message_type"] = "audio"  # images and files are read since issue 14
    event["event"]["message"]["content"] = json.dumps({"file_key": "file_x", "duration": 2000})
    await stack.emu.control("POST", "/events", {"payload": event})
    await filtered(stack, "unsupported_message_type")


async def test_credentials_drive_the_connection(stack: Stack) -> None:
    await stack.emu.control(
        "POST", "/apps", {"app_id": "cli_second", "app_secret": "second-secret-0123456789"}
    )
    await stack.patch(app_id="cli_second", app_secret="second-secret-0123456789")

    async def moved() -> bool:
        apps = {c["app_id"] for c in await _connections(stack.emu)}
        return apps == {"cli_second"}

    await eventually(moved)  # the old connection closed, a new one opened for the new app
    deleted = await stack.api.delete(f"/api/integrations/feishu/{stack.connector_id}")
    assert deleted.status_code == 204

    async def none_left() -> bool:
        return not await _connections(stack.emu)

    await eventually(none_left)


async def test_a_silent_half_open_connection_is_dropped_and_replaced(stack: Stack) -> None:
    # Short pings first (the client learns them at discovery), then a link that stays open but says nothing.
    await stack.emu.control("POST", "/config", {"ping_interval_seconds": 1})
    await stack.emu.control("POST", "/faults", {"drop_connections": True})
    await eventually(lambda: _count_log(stack, "ws_connected", 2))
    await stack.emu.control("POST", "/faults", {"silent": True})

    async def presumed_dead() -> bool:
        return any(
            "presumed dead" in e["detail"].get("error", "")
            for e in await stack.logs(action="ws_client_error")
        )

    await eventually(presumed_dead, timeout=20)
    await stack.emu.control("POST", "/faults", {"silent": False})
    await eventually(lambda: _count_log(stack, "ws_connected", 3), timeout=20)
    await stack.wait_connected()
    await stack.say("alive again")
    [message] = await routed(stack)
    assert message.text == "alive again"


async def test_a_burst_with_duplicates_is_routed_once_each_within_the_rate_limit(stack: Stack) -> None:
    await stack.patch(rate_limit_per_minute=15)
    repeated = _event_for(stack.emu, new_id("om_"), "@_user_1 repeated")
    bodies = [{"payload": repeated}] * 5 + [
        {"payload": _event_for(stack.emu, new_id("om_"), f"@_user_1 burst {i}")} for i in range(20)
    ]
    await asyncio.gather(*(stack.emu.control("POST", "/events", body) for body in bodies))
    await eventually(lambda: _acked_all(stack.emu))

    async def settled() -> list[str] | None:
        reasons = await stack.filtered_reasons()
        return reasons if len(stack.butler.received) + len(reasons) >= 21 else None

    reasons = await settled() or await eventually(settled)
    texts = [m.text for m in stack.butler.received]
    assert len(texts) == 15 and len(set(texts)) == 15  # the limit, and never the same message twice
    assert reasons == ["rate_limited"] * 6  # 21 distinct messages from one sender: 6 over the limit


async def test_a_nul_in_a_message_is_replaced_not_a_poison_pill(stack: Stack) -> None:
    # PostgreSQL text cannot hold NUL: unreplaced, the claim would fail, the event would not be acked and
    # Feishu would push it again for ever.
    await stack.say("status\u0000please")
    [message] = await routed(stack)
    assert message.text == "status\ufffdplease"
