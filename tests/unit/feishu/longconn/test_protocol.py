"""The long-connection rules, checked with raw bytes only."""

from __future__ import annotations

import json
import random

import pytest

from echocenter.feishu.longconn import frames
from echocenter.feishu.longconn.frames import Frame, FrameMethod
from echocenter.feishu.longconn.protocol import (
    ClientConfig,
    DiscoveryRefused,
    Reassembler,
    ack_frame,
    backoff,
    classify_error,
    handshake_refused,
    ping_frame,
    pong_config,
)


def test_ping_frame_bytes_always_carry_the_four_required_scalars() -> None:
    data = frames.encode(ping_frame(7))
    # field 1..4 as varints (tags 0x08, 0x10, 0x18, 0x20), zeros included, then the type header
    assert data.startswith(b"\x08\x00\x10\x00\x18\x07\x20\x00")
    assert frames.decode(data).headers == [("type", "ping")]


def test_decode_refuses_truncated_and_garbage_bytes() -> None:
    with pytest.raises(frames.FrameError):
        frames.decode(b"\x08\x01")
    with pytest.raises(frames.FrameError):
        frames.decode(b"\xff\xff\xff")


def test_an_ack_echoes_the_frame_with_biz_rt_and_a_base64_result() -> None:
    data = Frame(
        seq_id=9,
        log_id=11,
        service=3,
        method=FrameMethod.DATA,
        headers=[("type", "event"), ("message_id", "m1")],
        payload=b"{}",
    )
    ack = frames.decode(frames.encode(ack_frame(data, data={"toast": {"content": "ok"}}, biz_rt_ms=4)))
    assert (ack.seq_id, ack.log_id, ack.service, ack.method) == (9, 11, 3, FrameMethod.DATA)
    assert ack.header("message_id") == "m1" and ack.header("biz_rt") == "4"
    assert frames.parse_ack_payload(ack.payload).data == {"toast": {"content": "ok"}}
    assert json.loads(ack_frame(data).payload) == {"code": 200}  # no result: no data field at all


def _part(message_id: str, total: int, seq: int, payload: bytes) -> Frame:
    return Frame(
        method=FrameMethod.DATA,
        headers=[("message_id", message_id), ("sum", str(total)), ("seq", str(seq))],
        payload=payload,
    )


def test_reassembly_in_any_order_and_expiry_of_incomplete_parts() -> None:
    parts = Reassembler(ttl=5)
    assert parts.add(_part("a", 3, 2, b"C"), now=0) is None
    assert parts.add(_part("b", 2, 0, b"x"), now=0) is None
    assert parts.add(_part("a", 3, 0, b"A"), now=1) is None
    assert parts.add(_part("a", 3, 1, b"B"), now=2) == b"ABC"
    assert len(parts) == 1
    assert parts.add(_part("c", 1, 0, b"single"), now=10) == b"single"
    assert len(parts) == 0  # "b" waited longer than the ttl and was dropped
    assert parts.add(_part("d", 2, 5, b"bad seq"), now=10) is None


def test_pong_config_applies_server_values_and_keeps_the_rest() -> None:
    pong = Frame(
        headers=[("type", "pong")], payload=json.dumps({"PingInterval": 5, "ReconnectCount": 3}).encode()
    )
    config = pong_config(pong, ClientConfig())
    assert (config.ping_interval, config.reconnect_interval) == (5, 120)
    assert pong_config(Frame(payload=b"not json"), config) == config
    assert pong_config(Frame(), config) == config


def test_backoff_starts_random_grows_and_is_capped() -> None:
    delays = backoff(first_max=5, base=1, factor=2, cap=8, rng=random.Random(1))
    values = [next(delays) for _ in range(8)]
    assert 0 <= values[0] <= 5
    assert all(0 < v <= 8 for v in values[1:])
    assert max(values[4:]) > max(values[1:3])  # grows until the cap


def test_discovery_codes_are_retryable_or_fatal() -> None:
    assert not classify_error(DiscoveryRefused(1, "system busy")).fatal
    assert not classify_error(DiscoveryRefused(1000040343, "internal")).fatal
    assert classify_error(DiscoveryRefused(1000040344, "no credential")).fatal


def test_handshake_refusals() -> None:
    too_many = classify_error(
        handshake_refused(
            401, {"handshake-status": "514", "handshake-msg": "exceed", "handshake-autherrcode": "1000040350"}
        )
    )
    assert too_many.fatal and "exceed" in too_many.why
    forbidden = handshake_refused(403, {"handshake-status": "403", "handshake-msg": "forbidden"})
    assert classify_error(forbidden).fatal
    ticket = handshake_refused(401, {"handshake-status": "514", "handshake-msg": "ticket"})
    assert not classify_error(ticket).fatal
    assert not classify_error(handshake_refused(502, {})).fatal
