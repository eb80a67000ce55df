"""The WebSocket agents connect to, served as plain ASGI in front of the FastAPI router.

One instance holds up to 20,000 of these at once (issue 15), so each costs what it must and no more: no
FastAPI/Starlette WebSocket and route stack kept alive per connection (a good part of a connection's
memory), no database session held after the token check, nothing awaited on the database while frames
wait to be read (presence is buffered, cluster/presence.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Receive, Scope, Send

from echocenter.agents import service
from echocenter.agents.commands import MAX_PATTERNS, normalize, pattern_error
from echocenter.agents.frames import FrameRefused, read_frame
from echocenter.agents.hub import AgentHub
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

AGENT_SOCKET_PATH = "/api/agents/ws"


class AgentSocketRoute:
    """ASGI middleware: the agent socket is answered here, everything else goes to the app.

    Inside the app (``add_middleware``) it finds the app's state in the scope; `echocenter serve` also wraps
    the whole app in one (``state=app.state``), so agent sockets skip even FastAPI's outer layers."""

    def __init__(self, app: ASGIApp, *, state: Any = None) -> None:
        self.app = app
        self._state = state

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: it hands back the one to await, so an agent socket's task keeps no frame
        # of this layer for its whole life (one frame less on each of 20,000 sockets).
        if scope["type"] == "websocket" and scope["path"] == AGENT_SOCKET_PATH:
            state = self._state if self._state is not None else scope["app"].state
            return agent_socket(state.runtime, state.agents, scope, receive, send)
        return self.app(scope, receive, send)


def _token(scope: Scope) -> str:
    headers: dict[bytes, bytes] = {name.lower(): value for name, value in scope["headers"]}
    header = headers.get(b"authorization", b"").decode("latin-1")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get(b"x-agent-token", b"").decode("latin-1").strip()


class _Link:
    """How the hub talks to one agent: JSON text frames out, and a close."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send_json(self, data: Any) -> None:
        await self._send({"type": "websocket.send", "text": json.dumps(data)})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason or ""})


def _declared(commands: Any) -> list[str] | None:
    """The agent's own command list from its hello, or None when it is not a list of valid patterns."""
    if not isinstance(commands, list) or len(commands) > MAX_PATTERNS:
        return None
    if not all(isinstance(c, str) and pattern_error(c) is None for c in commands):
        return None
    return list(dict.fromkeys(normalize(c) for c in commands))


async def _declare(runtime: Runtime, agent_id: int, name: str, commands: Any) -> None:
    declared = _declared(commands)
    if declared is None:
        log_event(log, "agent_hello_refused", level=logging.WARNING, agent=name)
        return
    async with runtime.sessions() as session:
        await service.declare(session, agent_id, declared)
    log_event(log, "agent_declared", agent=name, commands=len(declared))


_writes: set[asyncio.Task[None]] = set()  # declarations being written (a strong reference until done)


def _spawn(write: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(write)
    _writes.add(task)
    task.add_done_callback(_written)


def _written(task: asyncio.Task[None]) -> None:
    _writes.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log_event(log, "agent_declare_failed", level=logging.WARNING, error=type(task.exception()).__name__)


async def _identify(runtime: Runtime, token: str) -> tuple[int, str] | None:
    """The agent's id and name, or None; the session and ORM object end here, not with the connection."""
    async with runtime.sessions() as session:
        agent = await service.authenticate(session, token)
    return None if agent is None else (agent.id, agent.name)


def _handle(runtime: Runtime, hub: AgentHub, agent_id: int, name: str, message: dict[str, Any]) -> None:
    if message.get("type") == "result":
        hub.take_result(name, message)
    elif message.get("type") == "hello":
        # Written beside the read loop, not in it: uvicorn stops reading a socket while its last frame
        # waits for the app, and 20,000 hellos queue on the database at a mass reconnect.
        _spawn(_declare(runtime, agent_id, name, message.get("commands")))
    hub.heartbeat(name)  # heartbeats and results both count; buffered, never awaited here


def _take(runtime: Runtime, hub: AgentHub, agent_id: int, name: str, event: Any) -> bool:
    """One event from the socket; False when the socket closed. FrameRefused after one log line."""
    if event["type"] != "websocket.receive":
        return False  # websocket.disconnect
    try:
        message = read_frame(event)
    except FrameRefused as refused:
        # One line, no traceback: the agent sent something we do not speak; tell it why and close.
        log_event(log, "agent_frame_refused", agent=name, code=refused.close_code, reason=refused.reason)
        raise
    _handle(runtime, hub, agent_id, name, message)
    return True


def _has_nul(scope: Scope) -> bool:
    """A NUL in the query refuses the handshake, as the app-wide guard does for routes (api/nul_guard.py)."""
    return "\x00" in unquote_plus(scope.get("query_string", b"").decode("latin-1"))


async def agent_socket(runtime: Runtime, hub: AgentHub, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if _has_nul(scope):  # closed before accept: the client sees HTTP 403
        await send({"type": "websocket.close", "code": 1008, "reason": "NUL character in the query"})
        return
    identity = await _identify(runtime, _token(scope))
    if identity is None:  # closed before accept: the client sees HTTP 403
        await send({"type": "websocket.close", "code": 4401, "reason": "unknown or revoked agent token"})
        return
    agent_id, name = identity
    await send({"type": "websocket.accept"})
    link = _Link(send)
    await hub.attach(name, agent_id, link)
    try:
        # The read loop lives here, not in a coroutine of its own, and nothing of the last frame stays
        # referenced while the socket idles: 20,000 of these wait at once.
        while _take(runtime, hub, agent_id, name, await receive()):
            pass
    except FrameRefused as refused:
        await link.close(code=refused.close_code, reason=refused.reason)
    finally:
        hub.detach(name, link)
        log_event(log, "agent_socket_closed", agent=name)
