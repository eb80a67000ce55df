"""The long-connection client's rules, without I/O: frames to send, frames received, reassembly, backoff.

The asyncio connection (``client.py``) only moves bytes through these functions, so every rule here is
tested with raw bytes alone.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from echocenter.errors import UpstreamError
from echocenter.feishu.longconn.frames import Frame, FrameMethod, FrameType, ack_payload

# Discovery answer codes worth retrying; every other non-zero code is fatal (shared/feishu/PROTOCOL.md).
RETRYABLE_DISCOVERY_CODES = frozenset({1, 1000040343})
HANDSHAKE_AUTH_FAILED = 514
HANDSHAKE_FORBIDDEN = 403
EXCEED_CONN_LIMIT = 1000040350
PARTS_TTL_SECONDS = 10.0


class ConnState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the server tells the client (discovery and every pong), in seconds."""

    ping_interval: float = 120.0
    reconnect_interval: float = 120.0
    reconnect_nonce: float = 30.0
    reconnect_count: int = -1

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
            reconnect_count=int(number("ReconnectCount", base.reconnect_count)),
        )


class LongConnError(UpstreamError):
    """A failure of the long connection. ``fatal``: retrying with the same credentials cannot help."""

    def __init__(self, message: str, *, fatal: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.feishu_code = code


def classify_discovery(code: int, msg: str) -> LongConnError:
    fatal = code not in RETRYABLE_DISCOVERY_CODES
    return LongConnError(f"discovery refused: {msg or 'no message'} (code {code})", fatal=fatal, code=code)


def classify_handshake(status: int, headers: dict[str, str]) -> LongConnError:
    """A refused WebSocket upgrade, read from Feishu's handshake-* headers."""
    try:
        code = int(headers.get("handshake-status", status))
    except ValueError:
        code = status
    msg = headers.get("handshake-msg", f"HTTP {status}")
    try:
        auth_code = int(headers.get("handshake-autherrcode", "0"))
    except ValueError:
        auth_code = 0
    fatal = code == HANDSHAKE_FORBIDDEN or (code == HANDSHAKE_AUTH_FAILED and auth_code == EXCEED_CONN_LIMIT)
    detail = f" (auth error {auth_code})" if auth_code else ""
    return LongConnError(
        f"handshake refused: {msg}{detail} (status {code})", fatal=fatal, code=auth_code or code
    )


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
