"""Connected agents: directives out, results back, matched by request_id (never "the next message")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from echocenter.errors import UpstreamError
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)


class AgentLink(Protocol):
    async def send_json(self, data: Any) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool
    output: str


class AgentOffline(UpstreamError):
    """The agent is not connected here, or its link failed while the directive was sent."""


@dataclass(slots=True)  # one per connected agent, up to 20,000
class _Connected:
    agent_id: int
    link: AgentLink
    pending: set[str] | None = None  # request ids awaiting this agent; None rather than an empty set (216 B)


class Presence(Protocol):
    """Where the hub reports who it holds (cluster/presence.py: buffered, never awaited here)."""

    def connected(self, agent_id: int) -> None: ...

    def disconnected(self, agent_id: int) -> None: ...

    def heartbeat(self, agent_id: int) -> None: ...


Roster = Callable[[], Awaitable[Collection[str]]]


class AgentHub:
    def __init__(self, presence: Presence | None = None, roster: Roster | None = None) -> None:
        self._connected: dict[str, _Connected] = {}  # by agent name
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}  # by request_id
        self._presence = presence
        self._roster = roster  # the shared view: agents any live instance holds

    def online(self) -> list[str]:
        """Agents connected to this instance."""
        return sorted(self._connected)

    async def online_anywhere(self) -> list[str]:
        """Agents connected to any live instance (this one's are counted even before their row is written)."""
        elsewhere = await self._roster() if self._roster is not None else ()
        return sorted(set(elsewhere) | set(self._connected))

    def is_online(self, name: str) -> bool:
        return name in self._connected

    def heartbeat(self, name: str) -> None:
        connected = self._connected.get(name)
        if connected is not None and self._presence is not None:
            self._presence.heartbeat(connected.agent_id)

    async def attach(self, name: str, agent_id: int, link: AgentLink) -> None:
        previous = self._connected.get(name)
        self._connected[name] = _Connected(agent_id, link)
        if self._presence is not None:
            self._presence.connected(agent_id)
        if previous is not None:  # the same agent connected again: the older link is stale
            with contextlib.suppress(Exception):
                await previous.link.close(code=4000, reason="replaced by a newer connection")
        log_event(log, "agent_online", agent=name)

    def detach(self, name: str, link: AgentLink) -> None:
        current = self._connected.get(name)
        if current is None or current.link is not link:
            return
        del self._connected[name]
        if self._presence is not None:
            self._presence.disconnected(current.agent_id)
        for request_id in current.pending or ():
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(CommandResult(False, "the agent disconnected before answering"))
        log_event(log, "agent_offline", agent=name)

    async def disconnect(self, name: str) -> None:
        current = self._connected.get(name)
        if current is not None:
            with contextlib.suppress(Exception):
                await current.link.close(code=4003, reason="revoked")
            self.detach(name, current.link)

    def take_result(self, name: str, message: dict[str, Any]) -> bool:
        """A result from an agent; True when it answered a directive this hub is waiting on."""
        request_id = message.get("request_id")
        connected = self._connected.get(name)
        pending = connected.pending if connected is not None else None
        if not isinstance(request_id, str) or connected is None or request_id not in (pending or ()):
            return False  # unknown, or someone else's request: ignored
        _forget(connected, request_id)
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return False
        output = message.get("output")
        text = output if isinstance(output, str) else str(output)
        # Command output may hold NUL bytes (binary files, /proc/*/environ); PostgreSQL cannot store them.
        future.set_result(CommandResult(bool(message.get("ok")), text.replace("\x00", "\ufffd")))
        return True

    async def run(
        self, name: str, *, request_id: str, command: str, reason: str, timeout: float
    ) -> CommandResult:
        connected = self._connected.get(name)
        if connected is None:
            raise AgentOffline(f"agent {name} is offline")
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        if connected.pending is None:
            connected.pending = set()
        connected.pending.add(request_id)
        try:
            await connected.link.send_json(
                {"type": "directive", "request_id": request_id, "command": command, "reason": reason}
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return CommandResult(False, f"no result from {name} within {timeout:g} s")
        except Exception as exc:
            raise AgentOffline(f"agent {name} could not be reached: {type(exc).__name__}") from exc
        finally:
            self._waiting.pop(request_id, None)
            _forget(connected, request_id)


def _forget(connected: _Connected, request_id: str) -> None:
    if connected.pending is not None:
        connected.pending.discard(request_id)
        if not connected.pending:
            connected.pending = None
