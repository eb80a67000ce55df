"""Admin routes for agents, and the WebSocket agents connect to."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, WebSocket, status
from starlette.websockets import WebSocketDisconnect

from echocenter.agents import service
from echocenter.agents.commands import MAX_PATTERNS, effective, normalize, pattern_error
from echocenter.agents.frames import FrameRefused, read_frame
from echocenter.agents.hub import AgentHub
from echocenter.agents.schemas import AgentCreate, AgentCreated, AgentOut, AgentUpdate
from echocenter.api.deps import CurrentAdmin, SessionDep
from echocenter.api.error_docs import errors
from echocenter.cluster.bus import EventBus
from echocenter.cluster.presence import online_agents
from echocenter.db.models import Agent
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/agents", tags=["agents"])
AGENT_DISCONNECT = "agent_disconnect"  # bus notice: {"kind": "agent_disconnect", "name": …}


def _hub(request: Request) -> AgentHub:
    hub: AgentHub = request.app.state.agents
    return hub


def _out(agent: Agent, hub: AgentHub, elsewhere: Collection[str] = ()) -> AgentOut:
    return AgentOut(
        id=agent.id,
        name=agent.name,
        online=agent.revoked_at is None and (hub.is_online(agent.name) or agent.name in elsewhere),
        created_at=agent.created_at,
        revoked_at=agent.revoked_at,
        last_seen_at=agent.last_seen_at,
        commands=agent.commands or [],
        declared_commands=agent.declared_commands or [],
        effective_commands=effective(agent.commands or [], agent.declared_commands or []),
    )


async def _disconnect_everywhere(request: Request, name: str) -> None:
    """Close the agent's socket here, and tell the other instances (one of them may hold it)."""
    await _hub(request).disconnect(name)
    bus: EventBus = request.app.state.bus
    await bus.publish(AGENT_DISCONNECT, name=name)


@router.post(
    "",
    response_model=AgentCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Register an agent; its token is in this answer only",
    responses=errors(409),
)
async def register(body: AgentCreate, _: CurrentAdmin, session: SessionDep, request: Request) -> AgentCreated:
    agent, token = await service.register(session, name=body.name, commands=body.commands)
    return AgentCreated(**_out(agent, _hub(request)).model_dump(), token=token)


@router.get("", response_model=list[AgentOut], summary="Agents with their online state")
async def list_agents(_: CurrentAdmin, session: SessionDep, request: Request) -> list[AgentOut]:
    hub = _hub(request)
    timeout = timedelta(seconds=request.app.state.runtime.settings.instance_timeout_seconds)
    anywhere = await online_agents(session, timeout=timeout)  # the shared view: held by any live instance
    return [_out(a, hub, anywhere) for a in await service.list_agents(session)]


@router.patch(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Set the commands this agent may be asked to run (empty = the agent's own list, or any)",
)
async def update_agent(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: AgentUpdate,
    _: CurrentAdmin,
    session: SessionDep,
    request: Request,
) -> AgentOut:
    agent = await service.set_commands(session, agent_id, body.commands)
    return _out(agent, _hub(request))


@router.delete("/{agent_id}", response_model=AgentOut, summary="Revoke an agent (its connection is closed)")
async def revoke(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: CurrentAdmin, session: SessionDep, request: Request
) -> AgentOut:
    agent = await service.revoke(session, agent_id)
    await _disconnect_everywhere(request, agent.name)
    return _out(agent, _hub(request))


@router.post("/{agent_id}/token", response_model=AgentCreated, summary="Issue a new token (shown once)")
async def rotate_token(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: CurrentAdmin, session: SessionDep, request: Request
) -> AgentCreated:
    agent, token = await service.rotate_token(session, agent_id)
    await _disconnect_everywhere(request, agent.name)  # whoever holds the old token is out
    return AgentCreated(**_out(agent, _hub(request)).model_dump(), token=token)


def _token(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return websocket.headers.get("x-agent-token", "").strip()


class _Link:
    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def send_json(self, data: Any) -> None:
        await self._ws.send_text(json.dumps(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.close(code=code, reason=reason)


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


@router.websocket("/ws")
async def agent_socket(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    hub: AgentHub = websocket.app.state.agents
    async with runtime.sessions() as session:
        agent = await service.authenticate(session, _token(websocket))
    if agent is None:
        await websocket.close(code=4401, reason="unknown or revoked agent token")  # before accept: HTTP 403
        return
    await websocket.accept()
    link = _Link(websocket)
    await hub.attach(agent.name, agent.id, link)
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            try:
                message = read_frame(frame)
            except FrameRefused as refused:
                # One line, no traceback: the agent sent something we do not speak; tell it why and close.
                log_event(
                    log, "agent_frame_refused", agent=agent.name, code=refused.code, reason=refused.reason
                )
                await websocket.close(code=refused.code, reason=refused.reason)
                break
            if message.get("type") == "result":
                hub.take_result(agent.name, message)
            elif message.get("type") == "hello":
                await _declare(runtime, agent.id, agent.name, message.get("commands"))
            hub.heartbeat(agent.name)  # heartbeats and results both count; buffered, never awaited here
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.detach(agent.name, link)
        log_event(log, "agent_socket_closed", agent=agent.name)
