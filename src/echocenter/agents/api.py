"""Admin routes for agents, and the WebSocket agents connect to."""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, WebSocket, status
from starlette.websockets import WebSocketDisconnect

from echocenter.agents import service
from echocenter.agents.frames import FrameRefused, read_frame
from echocenter.agents.hub import AgentHub
from echocenter.agents.schemas import AgentCreate, AgentCreated, AgentOut
from echocenter.api.deps import CurrentAdmin, SessionDep
from echocenter.api.error_docs import errors
from echocenter.db.models import Agent
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/agents", tags=["agents"])
SEEN_WRITE_INTERVAL = 5.0


def _hub(request: Request) -> AgentHub:
    hub: AgentHub = request.app.state.agents
    return hub


def _out(agent: Agent, hub: AgentHub) -> AgentOut:
    return AgentOut(
        id=agent.id,
        name=agent.name,
        online=agent.revoked_at is None and hub.is_online(agent.name),
        created_at=agent.created_at,
        revoked_at=agent.revoked_at,
        last_seen_at=agent.last_seen_at,
    )


@router.post(
    "",
    response_model=AgentCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Register an agent; its token is in this answer only",
    responses=errors(409),
)
async def register(body: AgentCreate, _: CurrentAdmin, session: SessionDep, request: Request) -> AgentCreated:
    agent, token = await service.register(session, name=body.name)
    return AgentCreated(**_out(agent, _hub(request)).model_dump(), token=token)


@router.get("", response_model=list[AgentOut], summary="Agents with their online state")
async def list_agents(_: CurrentAdmin, session: SessionDep, request: Request) -> list[AgentOut]:
    hub = _hub(request)
    return [_out(a, hub) for a in await service.list_agents(session)]


@router.delete("/{agent_id}", response_model=AgentOut, summary="Revoke an agent (its connection is closed)")
async def revoke(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: CurrentAdmin, session: SessionDep, request: Request
) -> AgentOut:
    agent = await service.revoke(session, agent_id)
    hub = _hub(request)
    await hub.disconnect(agent.name)
    return _out(agent, hub)


@router.post("/{agent_id}/token", response_model=AgentCreated, summary="Issue a new token (shown once)")
async def rotate_token(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: CurrentAdmin, session: SessionDep, request: Request
) -> AgentCreated:
    agent, token = await service.rotate_token(session, agent_id)
    hub = _hub(request)
    await hub.disconnect(agent.name)  # whoever holds the old token is out
    return AgentCreated(**_out(agent, hub).model_dump(), token=token)


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
    last_write = 0.0
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
            if time.monotonic() - last_write > SEEN_WRITE_INTERVAL:  # heartbeats and results both count
                last_write = time.monotonic()
                async with runtime.sessions() as session:
                    await service.seen(session, agent.id)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.detach(agent.name, link)
        log_event(log, "agent_socket_closed", agent=agent.name)
