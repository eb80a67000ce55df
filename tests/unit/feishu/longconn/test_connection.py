"""The sans-I/O long connection, fed raw bytes and times alone: what it sends, hands over and decides."""

from __future__ import annotations

import base64
import json
import random

import pytest

from echocenter.feishu.longconn.frames import Frame, FrameMethod, decode, encode
from echocenter.feishu.longconn.protocol import (
    Connection,
    ConnectionDead,
    ConnState,
    DiscoveryRefused,
    IllegalConnTransition,
    LongConnError,
    handshake_refused,
)

URL = "wss://feishu.example/ws?device_id=d1&service_id=42"


def discovery(ping: float = 10, **config: float) -> dict[str, object]:
    client_config = {"PingInterval": ping, "ReconnectInterval": 120, "ReconnectNonce": 30, **config}
    return {"code": 0, "msg": "ok", "data": {"URL": URL, "ClientConfig": client_config}}


def connected(ping: float = 10, now: float = 100.0, **kwargs: object) -> Connection:
    conn = Connection(rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    conn.connecting(now)
    conn.opened(conn.discovered(200, discovery(ping)), now)
    return conn


def event_bytes(payload: bytes, *, seq_id: int = 5, parts: tuple[int, int] | None = None) -> bytes:
    headers = [("type", "event"), ("message_id", "msg-1"), ("trace_id", "t")]
    total, seq = parts or (1, 0)
    headers += [("sum", str(total)), ("seq", str(seq))]
    return encode(
        Frame(seq_id=seq_id, log_id=9, service=42, method=FrameMethod.DATA, headers=headers, payload=payload)
    )


def control_bytes(kind: str, payload: bytes = b"") -> bytes:
    return encode(Frame(service=42, method=FrameMethod.CONTROL, headers=[("type", kind)], payload=payload))


def test_an_attempt_discovers_opens_and_pings_the_service_at_once() -> None:
    conn = Connection()
    assert conn.state is ConnState.DISCONNECTED
    assert conn.connecting(0.0).state is ConnState.CONNECTING
    url = conn.discovered(200, discovery(ping=15))
    change, first_ping = conn.opened(url, 0.0)
    assert (change.state, change.url_host) == (ConnState.CONNECTED, "feishu.example")
    assert conn.state is ConnState.CONNECTED and conn.config.ping_interval == 15
    # service 42 from the URL, SeqID/LogID 0 written out, method 0 (control), type=ping
    assert first_ping.startswith(b"\x08\x00\x10\x00\x18\x2a\x20\x00")
    assert decode(first_ping).headers == [("type", "ping")]


def test_an_event_is_handed_over_and_its_ack_echoes_the_frame_with_biz_rt() -> None:
    conn = connected()
    delivery = conn.receive(event_bytes(b'{"x": 1}'), 200.0)
    assert delivery is not None and delivery.payload == b'{"x": 1}'
    ack = decode(conn.ack(delivery, 200.012))
    assert (ack.seq_id, ack.log_id, ack.service, ack.method) == (5, 9, 42, FrameMethod.DATA)
    assert ack.header("message_id") == "msg-1" and ack.header("biz_rt") == "12"
    assert json.loads(ack.payload) == {"code": 200}


def test_a_card_answer_rides_in_the_ack_as_base64_json() -> None:
    conn = connected()
    delivery = conn.receive(event_bytes(b"{}"), 200.0)
    assert delivery is not None
    body = json.loads(decode(conn.ack(delivery, 200.0, data={"toast": {"content": "ok"}})).payload)
    assert body["code"] == 200
    assert json.loads(base64.b64decode(body["data"])) == {"toast": {"content": "ok"}}


def test_parts_are_joined_and_only_the_completing_one_is_handed_over() -> None:
    conn = connected()
    assert conn.receive(event_bytes(b"C", seq_id=3, parts=(3, 2)), 200.0) is None
    assert conn.receive(event_bytes(b"A", seq_id=1, parts=(3, 0)), 200.1) is None
    delivery = conn.receive(event_bytes(b"B", seq_id=2, parts=(3, 1)), 200.2)
    assert delivery is not None and delivery.payload == b"ABC"
    assert decode(conn.ack(delivery, 200.2)).seq_id == 2  # the ack answers the completing part


def test_control_frames_and_old_style_card_frames_hand_nothing_over() -> None:
    conn = connected()
    old_card = encode(Frame(method=FrameMethod.DATA, headers=[("type", "card")], payload=b"{}"))
    for data in (control_bytes("pong"), control_bytes("ping"), old_card):
        assert conn.receive(data, 200.0) is None


def test_a_pong_applies_the_servers_config_to_pings_and_the_watchdog() -> None:
    conn = connected(ping=10, now=100.0)
    assert conn.receive(control_bytes("pong", b'{"PingInterval": 3, "ReconnectInterval": 20}'), 100.0) is None
    assert (conn.config.ping_interval, conn.config.reconnect_interval) == (3, 20)
    assert conn.watchdog_seconds == 11  # two ping intervals and a margin
    assert conn.receive(control_bytes("pong", b"not json"), 100.0) is None
    assert conn.config.ping_interval == 3  # a pong it cannot read changes nothing


def test_garbage_and_text_are_skipped_but_prove_the_link_alive() -> None:
    conn = connected(ping=10, now=100.0)
    assert conn.receive(b"\xff\xff\xff", 120.0) is None
    assert conn.receive("hello", 124.0) is None
    assert conn.tick(144.0) is not None  # not dead: heard at 124, the watchdog is 25 s
    with pytest.raises(ConnectionDead, match="presumed dead"):
        conn.tick(149.0)


def test_pings_are_due_every_interval_and_the_clock_says_when() -> None:
    conn = connected(ping=10, now=100.0)
    assert conn.wake_in(100.0) == 10
    assert conn.tick(105.0) is None
    conn.receive(control_bytes("pong"), 105.0)
    ping = conn.tick(110.0)
    assert ping is not None and decode(ping).headers == [("type", "ping")] and decode(ping).service == 42
    assert conn.tick(110.0) is None  # one ping per interval
    assert conn.wake_in(112.0) == 8


def test_silence_for_the_watchdog_period_is_a_dead_connection() -> None:
    conn = connected(ping=10, now=100.0)
    conn.receive(control_bytes("pong"), 110.0)
    assert conn.tick(134.9) is not None  # 24.9 s of silence: still alive (and a ping is due)
    assert conn.wake_in(134.9) == pytest.approx(0.1)  # the watchdog comes before the next ping
    with pytest.raises(ConnectionDead):
        conn.tick(135.0)


def test_a_clean_close_is_retried_soon_then_slower_up_to_the_cap() -> None:
    conn = Connection(backoff_cap=8, rng=random.Random(1))
    delays = []
    for attempt in range(8):
        conn.connecting(float(attempt))
        change, delay = conn.closed(None, float(attempt) + 0.1)
        assert (change.state, change.error, change.fatal) == (
            ConnState.DISCONNECTED,
            "connection closed by the server",
            False,
        )
        delays.append(delay)
    assert 0 <= delays[0] <= 1  # a random first delay: a fleet does not come back in step
    assert all(0 < d <= 8 for d in delays[1:]) and max(delays[4:]) > max(delays[1:3])


def test_a_long_lived_connection_starts_the_backoff_over() -> None:
    conn = Connection(backoff_cap=60, stable_after=30, rng=random.Random(3))
    for attempt in range(6):
        conn.connecting(attempt * 1.0)
        conn.closed(OSError("reset"), attempt * 1.0)
    conn.connecting(100.0)
    _, delay = conn.closed(OSError("reset"), 140.0)  # it was up 40 s
    assert delay <= 1.0


def test_a_fatal_refusal_waits_the_longest_and_reports_why() -> None:
    conn = Connection(backoff_cap=60)
    conn.connecting(0.0)
    with pytest.raises(DiscoveryRefused) as refused:
        conn.discovered(200, {"code": 1000040344, "msg": "no credential"})
    change, delay = conn.closed(refused.value, 0.5)
    assert (change.state, change.fatal, delay) == (ConnState.ERROR, True, 60)
    assert change.error is not None and "no credential" in change.error
    conn.connecting(61.0)
    too_many = handshake_refused(
        401, {"handshake-status": "514", "handshake-msg": "exceed", "handshake-autherrcode": "1000040350"}
    )
    assert conn.closed(too_many, 61.5)[0].fatal


def test_the_servers_reconnect_settings_only_lower_our_own() -> None:
    conn = Connection(backoff_cap=60, rng=random.Random(5))
    conn.connecting(0.0)
    conn.discovered(200, discovery(ReconnectInterval=4, ReconnectNonce=0))
    for at in range(10):
        _, delay = conn.closed(LongConnError("dropped"), at + 0.5)
        assert delay <= 4  # the server's ReconnectInterval caps the wait
        conn.connecting(at + 1.0)
    generous = Connection(backoff_cap=0.5)
    generous.connecting(0.0)
    generous.discovered(200, discovery(ReconnectInterval=300))
    assert generous.closed(DiscoveryRefused(1000040344, "no"), 0.1)[1] == 0.5  # ours is lower: kept


def test_a_protocol_failure_is_an_error_a_network_failure_a_disconnect() -> None:
    conn = Connection()
    conn.connecting(0.0)
    assert conn.closed(ConnectionDead("silent"), 1.0)[0].state is ConnState.ERROR
    conn.connecting(2.0)
    change, _ = conn.closed(ConnectionResetError("peer reset"), 3.0)
    assert (change.state, change.error) == (ConnState.DISCONNECTED, "ConnectionResetError: peer reset")


def test_discovery_answers_without_a_url_are_failures_not_refusals() -> None:
    conn = Connection()
    conn.connecting(0.0)
    for body in (["not", "an object"], {"msg": "no code"}, {"code": 0, "data": {"URL": "https://x"}}):
        with pytest.raises(LongConnError) as failure:
            conn.discovered(502, body)
        assert not isinstance(failure.value, DiscoveryRefused)


def test_moves_outside_the_transition_table_are_refused() -> None:
    conn = Connection()
    with pytest.raises(IllegalConnTransition):
        conn.opened(URL, 0.0)  # never connecting
    with pytest.raises(IllegalConnTransition):
        conn.closed(None, 0.0)  # nothing to close
    conn.connecting(0.0)
    with pytest.raises(IllegalConnTransition):
        conn.connecting(0.0)
    conn.opened(URL, 0.0)
    conn.closed(None, 1.0)
    assert conn.state is ConnState.DISCONNECTED
