"""Admin routes for agents (the WebSocket agents connect to is agents/socket.py)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from echocenter.agents import service
from echocenter.agents.commands import effective
from echocenter.agents.deps import AgentHubDep
from echocenter.agents.hub import AgentHub
from echocenter.agents.schemas import AgentCreate, AgentCreated, AgentOut, AgentPageOut, AgentUpdate
from echocenter.api.deps import BusDep, SessionDep, SettingsDep
from echocenter.api.error_docs import errors
from echocenter.auth.deps import CurrentAdmin
from echocenter.cluster.bus import EventBus
from echocenter.db.models import Agent

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/agents", tags=["agents"])
AGENT_DISCONNECT = "agent_disconnect"  # bus notice: {"kind": "agent_disconnect", "name": …}


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


async def _disconnect_everywhere(hub: AgentHub, bus: EventBus, name: str) -> None:
    """Close the agent's socket here, and tell the other instances (one of them may hold it)."""
    await hub.disconnect(name)
    await bus.publish(AGENT_DISCONNECT, name=name)


@router.post(
    "",
    response_model=AgentCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Register an agent; its token is in this answer only",
    responses=errors(409),
)
async def register(body: AgentCreate, _: CurrentAdmin, session: SessionDep, hub: AgentHubDep) -> AgentCreated:
    agent, token = await service.register(session, name=body.name, commands=body.commands)
    return AgentCreated(**_out(agent, hub).model_dump(), token=token)


@router.get("", response_model=AgentPageOut, summary="Agents by name, a page at a time, with counts")
async def list_agents(
    _: CurrentAdmin,
    session: SessionDep,
    hub: AgentHubDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64, description="the previous page's next_cursor")] = None,
    online: Annotated[bool | None, Query(description="only agents online (true) or offline (false)")] = None,
    q: Annotated[str, Query(max_length=64, description="name prefix, case-insensitive")] = "",
) -> AgentPageOut:
    # Filters and counts use the shared view (agent_presence, flushed every few seconds); a row is also
    # online when this instance holds its socket and has not flushed it yet.
    timeout = timedelta(seconds=settings.instance_timeout_seconds)
    page = await service.page_agents(
        session, timeout=timeout, limit=limit, cursor=cursor, online=online, prefix=q
    )
    return AgentPageOut(
        items=[_out(agent, hub, (agent.name,) if on else ()) for agent, on in page.items],
        total=page.total,
        online=page.online,
        next_cursor=page.next_cursor,
    )


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
    hub: AgentHubDep,
) -> AgentOut:
    agent = await service.set_commands(session, agent_id, body.commands)
    return _out(agent, hub)


@router.delete("/{agent_id}", response_model=AgentOut, summary="Revoke an agent (its connection is closed)")
async def revoke(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    _: CurrentAdmin,
    session: SessionDep,
    hub: AgentHubDep,
    bus: BusDep,
) -> AgentOut:
    agent = await service.revoke(session, agent_id)
    await _disconnect_everywhere(hub, bus, agent.name)
    return _out(agent, hub)


@router.post("/{agent_id}/token", response_model=AgentCreated, summary="Issue a new token (shown once)")
async def rotate_token(
    agent_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    _: CurrentAdmin,
    session: SessionDep,
    hub: AgentHubDep,
    bus: BusDep,
) -> AgentCreated:
    agent, token = await service.rotate_token(session, agent_id)
    await _disconnect_everywhere(hub, bus, agent.name)  # whoever holds the old token is out
    return AgentCreated(**_out(agent, hub).model_dump(), token=token)
