"""The long-connection client's rules, without I/O: a ``Connection`` object that takes bytes and the time and
returns bytes to send and decisions, plus the pure rules it is made of (frames, reassembly, server config,
backoff, ``classify_error``).

The asyncio client (``client.py``) only moves bytes through a ``Connection`` and sleeps as long as it says,
so every rule here is tested with raw bytes alone. Nothing here imports asyncio or touches a socket.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qs, urlparse

from echocenter.errors import EchoCenterError, UpstreamError
from echocenter.feishu.longconn.frames import (
    Frame,
    FrameError,
    FrameMethod,
    FrameType,
    ack_payload,
    decode,
    encode,
)

log = logging.getLogger(__name__)

# Discovery answer codes worth retrying; every other non-zero code is fatal (shared/feishu/PROTOCOL.md).
RETRYABLE_DISCOVERY_CODES = frozenset({1, 1000040343})
HANDSHAKE_AUTH_FAILED = 514
HANDSHAKE_FORBIDDEN = 403
EXCEED_CONN_LIMIT = 1000040350
PARTS_TTL_SECONDS = 10.0
FIRST_RETRY_MAX_SECONDS = 1.0  # a fleet spreads its reconnects over this, unless the server asks for less
MIN_RETRY_CAP_SECONDS = 1.0  # a server's ReconnectInterval lowers our backoff cap, never below this
STABLE_AFTER_SECONDS = 30.0  # an attempt that lasted this long was a success: the backoff starts over
WATCHDOG_MARGIN_SECONDS = 5.0


class ConnState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"  # the last attempt ended on a Feishu refusal or a protocol failure


# Every move a connection may make; anything else is a bug in the caller (see ``Connection._move``).
TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    ConnState.DISCONNECTED: frozenset({ConnState.CONNECTING}),
    ConnState.CONNECTING: frozenset({ConnState.CONNECTED, ConnState.DISCONNECTED, ConnState.ERROR}),
    ConnState.CONNECTED: frozenset({ConnState.DISCONNECTED, ConnState.ERROR}),
    ConnState.ERROR: frozenset({ConnState.CONNECTING}),
}


class IllegalConnTransition(EchoCenterError, RuntimeError):
    """A move ``TRANSITIONS`` does not allow: a bug in the caller."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the server tells the client (discovery and every pong), in seconds.

    ``PingInterval`` paces pings and the watchdog; ``ReconnectInterval`` caps the wait between attempts and
    ``ReconnectNonce`` the random first one (each only ever lowers our own figure). ``ReconnectCount`` is
    ignored on purpose: a bot that stops retrying after N attempts stays dead until someone notices."""

    ping_interval: float = 120.0
    reconnect_interval: float = 120.0
    reconnect_nonce: float = 30.0

    @classmethod
    def from_json(cls, data: object, default: ClientConfig | None = None) -> ClientConfig:
        base = default or cls()
        if not isinstance(data, dict):
            return base

        def number(key: str, fallback: float) -> float:
            value = data.get(key)
            return (
                float(value) if isinstance(value, int | float) and not isinstance(value, bool) else fallback
            )

        return cls(
            ping_interval=max(1.0, number("PingInterval", base.ping_interval)),
            reconnect_interval=max(0.0, number("ReconnectInterval", base.reconnect_interval)),
            reconnect_nonce=max(0.0, number("ReconnectNonce", base.reconnect_nonce)),
        )


class LongConnError(UpstreamError):
    """A failure of the long connection, in the protocol's own terms (``classify_error`` judges it)."""


class DiscoveryRefused(LongConnError):
    """Discovery answered a non-zero code."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"discovery refused: {msg or 'no message'} (code {code})")
        self.feishu_code = code


class HandshakeRefused(LongConnError):
    """The WebSocket upgrade was refused; Feishu says why in its handshake-* headers."""

    def __init__(self, status: int, auth_code: int, msg: str) -> None:
        detail = f" (auth error {auth_code})" if auth_code else ""
        super().__init__(f"handshake refused: {msg}{detail} (status {status})")
        self.status = status
        self.auth_code = auth_code


class ConnectionDead(LongConnError):
    """Nothing heard for the watchdog period: the peer is gone without a close (a half-open link)."""


def handshake_refused(status: int, headers: dict[str, str]) -> HandshakeRefused:
    """A refused WebSocket upgrade, read from Feishu's handshake-* headers (lower-case keys)."""
    try:
        code = int(headers.get("handshake-status", status))
    except ValueError:
        code = status
    try:
        auth_code = int(headers.get("handshake-autherrcode", "0"))
    except ValueError:
        auth_code = 0
    return HandshakeRefused(code, auth_code, headers.get("handshake-msg", f"HTTP {status}"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a failure: retry soon, or (fatal) retrying with the same credentials cannot help."""

    fatal: bool
    why: str


def classify_error(error: BaseException | int | None) -> Verdict:
    """Judge how a connection attempt ended: an exception, a discovery answer code, or None (a clean close
    by the server). Only Feishu's refusals can be fatal; anything on the way (network, timeouts, a dead link,
    a failure we did not foresee) is retried, since an unattended bot must never give up for good."""
    if error is None:
        return Verdict(fatal=False, why="connection closed by the server")
    if isinstance(error, int) and not isinstance(error, bool):
        return Verdict(fatal=_fatal_code(error), why=f"Feishu code {error}")
    if isinstance(error, DiscoveryRefused):
        return Verdict(fatal=_fatal_code(error.feishu_code), why=str(error))
    if isinstance(error, HandshakeRefused):
        fatal = error.status == HANDSHAKE_FORBIDDEN or (
            error.status == HANDSHAKE_AUTH_FAILED and error.auth_code == EXCEED_CONN_LIMIT
        )
        return Verdict(fatal=fatal, why=str(error))
    if isinstance(error, LongConnError):
        return Verdict(fatal=False, why=str(error))
    name = type(error).__name__
    return Verdict(fatal=False, why=f"{name}: {error}" if str(error) else name)


def _fatal_code(code: int) -> bool:
    # A discovery answer: only "system busy" and "internal error" are worth retrying soon.
    return code not in RETRYABLE_DISCOVERY_CODES


def backoff(
    *,
    first_max: float = 5.0,
    base: float = 1.0,
    factor: float = 2.0,
    cap: float = 60.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Delays between reconnects: a random first delay (so a fleet does not reconnect in step), then
    exponential growth with jitter, capped. A new generator is taken after each successful connection."""
    rng = rng or random.Random()
    yield rng.uniform(0, first_max)
    delay = base
    while True:
        yield min(cap, delay) * rng.uniform(0.5, 1.0)
        delay = min(cap, delay * factor)


def ping_frame(service_id: int) -> Frame:
    return Frame(
        seq_id=0, log_id=0, service=service_id, method=FrameMethod.CONTROL, headers=[("type", FrameType.PING)]
    )


def ack_frame(frame: Frame, *, code: int = 200, data: object = None, biz_rt_ms: int = 0) -> Frame:
    """The response to a data frame: the same frame back, with ``biz_rt`` and the result as payload."""
    return Frame(
        seq_id=frame.seq_id,
        log_id=frame.log_id,
        service=frame.service,
        method=frame.method,
        headers=[*[(k, v) for k, v in frame.headers if k != "biz_rt"], ("biz_rt", str(biz_rt_ms))],
        payload=ack_payload(code, data),
        payload_encoding=frame.payload_encoding,
        payload_type=frame.payload_type,
        log_id_new=frame.log_id_new,
    )


@dataclass(slots=True)
class _Parts:
    total: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


class Reassembler:
    """Joins the parts of a multi-part payload (same ``message_id``, ``seq`` 0..sum-1, any order)."""

    def __init__(self, ttl: float = PARTS_TTL_SECONDS) -> None:
        self._pending: dict[str, _Parts] = {}
        self._ttl = ttl

    def add(self, frame: Frame, now: float | None = None) -> bytes | None:
        """The whole payload once the frame completes it; None while parts are missing."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        try:
            total = int(frame.header("sum") or "1")
            seq = int(frame.header("seq") or "0")
        except ValueError:
            return None
        if total <= 1:
            return frame.payload
        if not 0 <= seq < total:
            return None
        key = frame.header("message_id") or ""
        parts = self._pending.setdefault(key, _Parts(total, started=now))
        parts.chunks[seq] = frame.payload
        if len(parts.chunks) < parts.total:
            return None
        del self._pending[key]
        return b"".join(parts.chunks[i] for i in range(parts.total))

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._pending.items() if now - p.started > self._ttl]:
            del self._pending[key]

    def __len__(self) -> int:
        return len(self._pending)


def pong_config(frame: Frame, current: ClientConfig) -> ClientConfig:
    if not frame.payload:
        return current
    try:
        return ClientConfig.from_json(json.loads(frame.payload), current)
    except ValueError:
        return current


def service_id_of(url: str) -> int:
    """The ``service_id`` that discovery's URL carries; every control frame we send names it."""
    try:
        return int(parse_qs(urlparse(url).query).get("service_id", ["0"])[0])
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the client reports: the new state and, after a failure, why and whether it is fatal."""

    state: ConnState
    error: str | None = None
    fatal: bool = False
    url_host: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A whole event payload for the handler, answered with ``Connection.ack``."""

    frame: Frame  # the completing frame: the ack echoes it
    payload: bytes
    received: float  # monotonic seconds, the start of biz_rt


class Connection:
    """One long-connection client's state and decisions, across all its reconnects.

    Tell it what happens — an attempt starts (``connecting``), discovery answers (``discovered``), the
    WebSocket opens (``opened``), a message arrives (``receive``), time passes (``tick``), the attempt ends
    (``closed``) — and it answers with the bytes to send, the payloads to hand over, the state to report and
    how long to wait. The state moves only along ``TRANSITIONS``."""

    def __init__(
        self,
        *,
        backoff_cap: float = 60.0,
        stable_after: float = STABLE_AFTER_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.state = ConnState.DISCONNECTED
        self.config = ClientConfig()
        self._backoff_cap = backoff_cap
        self._stable_after = stable_after
        self._rng = rng or random.Random()
        self._delays = self._fresh_backoff()
        self._attempt_started = 0.0
        self._service_id = 0
        self._parts = Reassembler()
        self._heard = 0.0  # when anything last arrived: the watchdog's reference
        self._pinged = 0.0

    # --- one attempt, start to end --------------------------------------------------------------------
    def connecting(self, now: float) -> StateChange:
        self._move(ConnState.CONNECTING)
        self._attempt_started = now
        return StateChange(ConnState.CONNECTING)

    def discovered(self, status: int, body: object) -> str:
        """The WebSocket URL from discovery's JSON answer, whose ClientConfig is applied. Raises
        ``DiscoveryRefused`` for a non-zero code and ``LongConnError`` for an answer without a URL."""
        if not isinstance(body, dict):
            raise LongConnError("discovery answer is not a JSON object")
        code, msg = body.get("code"), body.get("msg")
        if not isinstance(code, int):
            raise LongConnError(f"discovery answered HTTP {status} without a code")
        if code != 0:
            raise DiscoveryRefused(code, msg if isinstance(msg, str) else "")
        data = body.get("data")
        url = data.get("URL") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise LongConnError("discovery answer has no WebSocket URL")
        self.config = ClientConfig.from_json(data.get("ClientConfig"), self.config)
        return url

    def opened(self, url: str, now: float) -> tuple[StateChange, bytes]:
        """The WebSocket is up: the state to report, and the first ping, to send right away."""
        self._move(ConnState.CONNECTED)
        self._service_id = service_id_of(url)
        self._parts = Reassembler()
        self._heard = self._pinged = now
        return StateChange(ConnState.CONNECTED, url_host=urlparse(url).netloc), encode(
            ping_frame(self._service_id)
        )

    def closed(self, error: BaseException | None, now: float) -> tuple[StateChange, float]:
        """The attempt ended (``error`` None: the server closed it): the state to report, and the seconds to
        wait before the next attempt."""
        verdict = classify_error(error)
        state = ConnState.ERROR if isinstance(error, LongConnError) else ConnState.DISCONNECTED
        self._move(state)
        if now - self._attempt_started > self._stable_after:
            self._delays = self._fresh_backoff()  # it was up a while: start over
        # A fatal refusal (bad credentials, too many connections) is retried at the slowest pace.
        delay = self._retry_cap() if verdict.fatal else min(next(self._delays), self._retry_cap())
        return StateChange(state, verdict.why, fatal=verdict.fatal), delay

    # --- the open connection --------------------------------------------------------------------------
    def receive(self, data: bytes | str, now: float) -> Delivery | None:
        """One WebSocket message: a whole event payload to hand over, or None (a control frame, a part of a
        payload, or something to skip)."""
        self._heard = now
        if not isinstance(data, bytes):
            log.warning("longconn_text_message_skipped")
            return None
        try:
            frame = decode(data)
        except FrameError:
            log.warning("longconn_bad_frame_skipped", exc_info=True)
            return None
        if frame.method == FrameMethod.CONTROL:
            if frame.type == FrameType.PONG:
                self.config = pong_config(frame, self.config)
            return None
        if frame.method != FrameMethod.DATA or frame.type != FrameType.EVENT:
            return None  # old-style "card" frames are not acked, as the official client does
        payload = self._parts.add(frame, now)
        if payload is None:
            return None  # more parts to come; only the completing part is acked
        return Delivery(frame, payload, now)

    def ack(self, delivery: Delivery, now: float, data: object = None) -> bytes:
        """The answer to a delivery once its handler is done; ``data`` (a card's answer) rides in it."""
        biz_rt_ms = int((now - delivery.received) * 1000)
        return encode(ack_frame(delivery.frame, data=data, biz_rt_ms=biz_rt_ms))

    def tick(self, now: float) -> bytes | None:
        """What the clock asks for: a ping when one is due. Raises ``ConnectionDead`` when nothing was heard
        for the watchdog period."""
        if now - self._heard >= self.watchdog_seconds:
            raise ConnectionDead(
                f"nothing received for {self.watchdog_seconds:g} s: connection presumed dead"
            )
        if now - self._pinged >= self.config.ping_interval:
            self._pinged = now
            return encode(ping_frame(self._service_id))
        return None

    def wake_in(self, now: float) -> float:
        """Seconds until ``tick`` has something to do, unless a message arrives first."""
        due = min(self._pinged + self.config.ping_interval, self._heard + self.watchdog_seconds)
        return max(0.0, due - now)

    @property
    def watchdog_seconds(self) -> float:
        # The server answers every ping with a pong, so silence for two ping intervals means a dead peer.
        return self.config.ping_interval * 2 + WATCHDOG_MARGIN_SECONDS

    # --- rules ----------------------------------------------------------------------------------------
    def _move(self, target: ConnState) -> None:
        if target not in TRANSITIONS[self.state]:
            raise IllegalConnTransition(f"{self.state.value} -> {target.value}")
        self.state = target

    def _retry_cap(self) -> float:
        return min(self._backoff_cap, max(MIN_RETRY_CAP_SECONDS, self.config.reconnect_interval))

    def _fresh_backoff(self) -> Iterator[float]:
        first = min(FIRST_RETRY_MAX_SECONDS, self.config.reconnect_nonce)
        return backoff(first_max=first, cap=self._backoff_cap, rng=self._rng)
