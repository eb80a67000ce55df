from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from echocenter.feishu.longconn.frames import FrameMethod
from tests.support.emulator import APP_ID, RawPeer, RunningEmulator, discover, raw_peer
from tests.support.waiting import eventually

pytestmark = pytest.mark.emulator(ack_timeout_seconds=0.3, card_response_timeout_seconds=1.0)


async def say(emu: RunningEmulator, text: str = "hello", **extra: object) -> dict[str, object]:
    body = {"chat_id": "oc_ops", "sender": "ou_alice", "text": text, "mention_bot": True, **extra}
    return await emu.control("POST", "/messages", body)  # type: ignore[no-any-return]


async def all_acked(emu: RunningEmulator, count: int = 1) -> list[dict[str, Any]]:
    """The emulator's deliveries once ``count`` of them exist and all are acked (fails on its deadline)."""

    async def acked() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await emu.control("GET", "/deliveries"))["items"]
        return items if len(items) >= count and all(d["acked"] for d in items) else None

    return await eventually(acked)


async def test_discovery_gives_a_url_and_client_config(emu: RunningEmulator) -> None:
    body = await discover(emu.http)
    assert body["code"] == 0
    assert body["data"]["URL"].startswith("ws://127.0.0.1:")
    assert "device_id=" in body["data"]["URL"] and "service_id=" in body["data"]["URL"]
    assert set(body["data"]["ClientConfig"]) == {
        "ReconnectCount",
        "ReconnectInterval",
        "ReconnectNonce",
        "PingInterval",
    }


@pytest.mark.parametrize(
    ("app_id", "secret"), [(APP_ID, "wrong"), ("cli_unknown", "x"), ("", ""), (APP_ID, "")]
)
async def test_discovery_refuses_bad_credentials(emu: RunningEmulator, app_id: str, secret: str) -> None:
    body = await discover(emu.http, app_id, secret)
    assert body["code"] == 1000040344


async def test_discovery_busy_fault_answers_code_1_then_recovers(emu: RunningEmulator) -> None:
    await emu.control("POST", "/faults", {"discovery_busy": 1})
    assert (await discover(emu.http))["code"] == 1
    assert (await discover(emu.http))["code"] == 0


async def test_ping_gets_a_pong_with_the_client_config(emu: RunningEmulator) -> None:
    await emu.control("POST", "/config", {"ping_interval_seconds": 7})
    async with raw_peer(emu.http) as peer:
        await peer.ping()
        pong = await peer.next_frame()
    assert pong.method == FrameMethod.CONTROL and pong.type == "pong"
    assert pong.service == peer.service_id
    assert json.loads(pong.payload) == {
        "ReconnectCount": -1,
        "ReconnectInterval": 120,
        "ReconnectNonce": 30,
        "PingInterval": 7,
    }


async def test_an_event_arrives_with_all_headers_and_the_ack_is_recorded(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        sent = await say(emu, "status please")
        frame, event = await peer.next_event()
        assert frame.service == peer.service_id and frame.method == FrameMethod.DATA
        for header in ("type", "message_id", "sum", "seq", "trace_id"):
            assert frame.header(header), header
        assert event["header"]["event_type"] == "im.message.receive_v1"
        message = event["event"]["message"]
        assert message["message_id"] == sent["message_id"]
        assert json.loads(message["content"]) == {"text": "@_user_1 status please"}
        assert message["mentions"][0]["id"]["open_id"] == emu.world.apps[APP_ID].bot_open_id
        assert (message["chat_type"], event["event"]["sender"]["sender_id"]["open_id"]) == (
            "group",
            "ou_alice",
        )
        await peer.ack(frame)
        deliveries = await all_acked(emu)
    assert [(d["acked"], d["ack_code"], len(d["attempts"]), d["biz_rt"]) for d in deliveries] == [
        (True, 200, 1, "1")
    ]


async def test_large_payloads_travel_in_parts_and_only_the_last_needs_the_ack(emu: RunningEmulator) -> None:
    await emu.control("POST", "/config", {"fragment_bytes": 200})
    async with raw_peer(emu.http) as peer:
        await say(emu, "x" * 1000)
        frames = []
        while not frames or len(frames) < int(frames[0].header("sum") or 1):
            frames.append(await peer.next_frame())
        total = int(frames[0].header("sum") or 0)
        assert total >= 5
        assert [int(f.header("seq") or -1) for f in frames] == list(range(total))
        assert len({f.header("message_id") for f in frames}) == 1
        event = json.loads(b"".join(f.payload for f in frames))
        assert "x" * 1000 in event["event"]["message"]["content"]
        await peer.ack(frames[-1])
        [delivery] = await all_acked(emu)  # fails on its deadline if the last part's ack was not enough
    assert delivery["acked"] is True


async def test_an_unacked_event_is_pushed_again_with_the_same_event_id(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        await say(emu)
        first_frame, first = await peer.next_event()
        second_frame, second = await peer.next_event(timeout=3)  # not acked: pushed again after 0.3 s
        assert second["header"]["event_id"] == first["header"]["event_id"]
        assert second_frame.header("message_id") != first_frame.header("message_id")
        await peer.ack(second_frame)
        [delivery] = await all_acked(emu)  # once the ack is recorded, nothing is pushed again
        assert peer.received.empty()  # acked: no third push
    assert (delivery["acked"], len(delivery["attempts"])) == (True, 2)
    assert (await emu.control("GET", "/counters"))["counters"]["ws.redelivery"] == 1


async def test_delayed_acks_cause_a_redelivery(emu: RunningEmulator) -> None:
    await emu.control("POST", "/faults", {"ack_delay_seconds": 0.6})
    async with raw_peer(emu.http) as peer:
        await say(emu)
        frame, _ = await peer.next_event()
        await peer.ack(frame)  # arrives after the 0.3 s deadline
        again, _ = await peer.next_event(timeout=3)
        await peer.ack(again)
        [delivery] = await all_acked(emu)  # the late acks land 0.6 s after they were sent
    assert delivery["acked"] and len(delivery["attempts"]) >= 2


async def test_each_event_goes_to_exactly_one_of_several_connections(emu: RunningEmulator) -> None:
    async with AsyncExitStack() as stack:
        peers: list[RawPeer] = [await stack.enter_async_context(raw_peer(emu.http)) for _ in range(3)]
        receivers: Counter[str] = Counter()
        event_ids: list[str] = []

        async def drain(peer: RawPeer) -> None:
            while True:
                frame, event = await peer.next_event(timeout=60)
                receivers[peer.device_id] += 1
                event_ids.append(event["header"]["event_id"])
                await peer.ack(frame)

        tasks = [asyncio.create_task(drain(p)) for p in peers]
        for i in range(30):
            await say(emu, f"m{i}")
        await all_acked(emu, count=30)  # all 30 answered: from now on nothing is pushed again
        for task in tasks:
            task.cancel()
    assert len(event_ids) == 30 and len(set(event_ids)) == 30  # no broadcast, no duplicate
    assert len(receivers) >= 2  # random choice spreads them (all on one of three: p = 3 * (1/3)^30)


async def test_the_fifty_first_connection_is_refused(emu: RunningEmulator) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(50):
            await stack.enter_async_context(raw_peer(emu.http))
        url = (await discover(emu.http))["data"]["URL"]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        headers = refused.value.response.headers
        assert headers["handshake-status"] == "514"
        assert headers["handshake-autherrcode"] == "1000040350"
        assert len((await emu.control("GET", "/connections"))["items"]) == 50


async def test_handshakes_without_a_valid_ticket_are_refused(emu: RunningEmulator) -> None:
    url = (await discover(emu.http))["data"]["URL"]
    forged = url.split("ticket=")[0] + "ticket=forged"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(forged):
            pass
    assert refused.value.response.headers["handshake-status"] == "514"


async def test_refuse_handshakes_fault(emu: RunningEmulator) -> None:
    await emu.control("POST", "/faults", {"refuse_handshakes": {"status": 403, "msg": "forbidden"}})
    url = (await discover(emu.http))["data"]["URL"]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 403
    assert refused.value.response.headers["handshake-msg"] == "forbidden"
    await emu.control("POST", "/faults", {"refuse_handshakes": {}})
    async with raw_peer(emu.http):
        pass


async def test_drop_connections_fault_closes_every_connection(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        result = await emu.control("POST", "/faults", {"drop_connections": True})
        assert result["dropped_connections"] == 1
        await asyncio.wait_for(peer.ws.wait_closed(), 3)
        assert peer.ws.close_code == 1011
    assert (await emu.control("GET", "/connections"))["items"] == []


async def test_an_event_waits_for_a_connection(emu: RunningEmulator) -> None:
    await say(emu, "sent while nobody listens")
    async with raw_peer(emu.http) as peer:
        frame, event = await peer.next_event(timeout=3)
        assert "sent while nobody listens" in event["event"]["message"]["content"]
        await peer.ack(frame)


async def test_garbage_frames_are_skipped_and_the_connection_lives(emu: RunningEmulator) -> None:
    async with raw_peer(emu.http) as peer:
        await peer.ws.send(b"\xff\x00garbage")
        await peer.ws.send("text is not a frame")
        await peer.ping()
        assert (await peer.next_frame()).type == "pong"
    assert (await emu.control("GET", "/counters"))["counters"]["ws.bad_frame"] == 2
