"""Issue 10, point 12: a malformed frame on the agent WebSocket is closed with a code and a reason and one log
line — never an exception in the ASGI application. Over a real WebSocket against the running service."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import Server
from tests.support.waiting import eventually


class _Records(logging.Handler):
    """Everything logged, uvicorn's own loggers included (they do not all propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not any(seen is record for seen in self.records):  # seen again on a parent logger
            self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "echocenter")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("echocenter").setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def _agent_token(server: Server, name: str = "probe") -> str:
    created = await server.client.post("/api/agents", json={"name": name})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


async def _online(server: Server) -> bool:
    return any(a["online"] for a in (await server.client.get("/api/agents")).json()["items"])


async def _closed_by_server(server: Server, token: str, frame: str | bytes) -> tuple[int, str]:
    url = server.url.replace("http", "ws", 1) + "/api/agents/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await eventually(lambda: _online(server))
        await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=10)  # the server's answer is its close frame
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or ""


MALFORMED: list[tuple[str, str | bytes, int, str]] = [
    ("binary", b"\x00\x01binary", 1003, "binary frames are not supported"),
    ("deeply nested", "[" * 100_000, 1007, "nested deeper than"),
    (
        "nested past the limit",
        '{"type": "result", "output": ' + "[" * 40 + "]" * 40 + "}",
        1007,
        "deeper than",
    ),
    ("not JSON", "run rm -rf /", 1007, "not valid JSON"),
    ("not an object", "[1, 2, 3]", 1007, "must be a JSON object"),
]


@pytest.mark.parametrize(("kind", "frame", "code", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_frame_is_closed_with_a_code_a_reason_and_one_log_line(
    server: Server, records: list[logging.LogRecord], kind: str, frame: Any, code: int, reason: str
) -> None:
    token = await _agent_token(server)
    closed_code, closed_reason = await _closed_by_server(server, token, frame)
    assert closed_code == code, (kind, closed_code, closed_reason)
    assert reason in closed_reason

    async def refused() -> list[logging.LogRecord]:
        return [r for r in records if r.getMessage() == "agent_frame_refused"]

    lines = await eventually(refused)
    assert len(lines) == 1
    assert lines[0].__dict__["fields"] == {"agent": "probe", "code": code, "reason": closed_reason}
    await eventually(lambda: _offline_logged(records))  # the socket's handler has finished
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR
    ]
    # The agent can come back with well-formed frames.
    assert await _closed_or_open_after_good_frame(server, token)


async def _offline_logged(records: list[logging.LogRecord]) -> bool:
    return any(r.getMessage() == "agent_socket_closed" for r in records)


async def _closed_or_open_after_good_frame(server: Server, token: str) -> bool:
    url = server.url.replace("http", "ws", 1) + "/api/agents/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "heartbeat"}))
        return bool(await eventually(lambda: _online(server)))


async def test_a_nul_in_the_socket_query_refuses_the_handshake_without_an_error(
    server: Server, records: list[logging.LogRecord]
) -> None:
    token = await _agent_token(server)
    url = server.url.replace("http", "ws", 1) + "/api/agents/ws?agent=%00"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}):
            pass
    assert refused.value.response.status_code == 403
    assert not await _online(server)
    assert not [r.getMessage() for r in records if r.levelno >= logging.ERROR]
