"""Agent registration: a token shown once, only its SHA-256 stored (tokens are random, so no slow hash)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, not_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.agents.commands import effective
from echocenter.db.models import Agent, AgentPresence, Instance
from echocenter.db.types import utcnow
from echocenter.errors import Conflict, NotFound

TOKEN_PREFIX = "eca_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def register(
    session: AsyncSession, *, name: str, commands: list[str] | None = None
) -> tuple[Agent, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent = Agent(
        name=name,
        token_hash=hash_token(token),
        created_at=utcnow(),
        commands=commands or [],
        declared_commands=[],
    )
    session.add(agent)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"an agent named {name!r} exists already", field="name") from exc
    return agent, token


async def authenticate(session: AsyncSession, token: str) -> Agent | None:
    agent = await session.scalar(select(Agent).where(Agent.token_hash == hash_token(token)))
    return agent if agent is not None and agent.revoked_at is None else None


@dataclass(frozen=True, slots=True)
class AgentPage:
    items: list[tuple[Agent, bool]]  # each agent with whether a live instance holds it
    total: int  # agents matching the name prefix
    online: int  # of those, online
    next_cursor: str | None  # the last name of this page; None on the last page


async def page_agents(
    session: AsyncSession,
    *,
    timeout: timedelta,
    limit: int,
    cursor: str | None = None,
    online: bool | None = None,
    prefix: str = "",
) -> AgentPage:
    """By name. Online = held by a live instance in the shared view (agent_presence), not revoked."""
    live = (
        select(AgentPresence.agent_id)
        .join(Instance, Instance.instance_id == AgentPresence.instance_id)
        .where(Instance.heartbeat_at > utcnow() - timeout)
    )
    is_online = and_(Agent.revoked_at.is_(None), Agent.id.in_(live))
    # Case-insensitive on both backends (SQLite's LIKE is, PostgreSQL's is not); % and _ are literal.
    matching = func.lower(Agent.name).startswith(prefix.lower(), autoescape=True) if prefix else true()
    total, up = (
        await session.execute(
            select(func.count(), func.count().filter(is_online)).select_from(Agent).where(matching)
        )
    ).one()
    query = select(Agent, is_online).where(matching)
    if online is not None:
        query = query.where(is_online if online else not_(is_online))
    if cursor is not None:
        query = query.where(Agent.name > cursor)
    rows = (await session.execute(query.order_by(Agent.name).limit(limit + 1))).all()
    items = [(agent, bool(on)) for agent, on in rows[:limit]]
    more = len(rows) > limit
    return AgentPage(items, total, up, items[-1][0].name if more else None)


async def _get(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    return agent


async def set_commands(session: AsyncSession, agent_id: int, commands: list[str]) -> Agent:
    agent = await _get(session, agent_id)
    agent.commands = commands
    await session.commit()
    return agent


async def declare(session: AsyncSession, agent_id: int, commands: list[str]) -> None:
    """What the agent said it runs, when it connected (kept in the database: any instance may ask)."""
    await session.execute(update(Agent).where(Agent.id == agent_id).values(declared_commands=commands))
    await session.commit()


async def commands_by_name(session: AsyncSession) -> dict[str, list[str]]:
    """The effective command list of every active agent (empty list = any command)."""
    rows = await session.execute(
        select(Agent.name, Agent.commands, Agent.declared_commands).where(Agent.revoked_at.is_(None))
    )
    return {name: effective(admin or [], declared or []) for name, admin, declared in rows}


async def revoke(session: AsyncSession, agent_id: int) -> Agent:
    agent = await _get(session, agent_id)
    if agent.revoked_at is None:
        agent.revoked_at = utcnow()
        await session.commit()
    return agent


async def rotate_token(session: AsyncSession, agent_id: int) -> tuple[Agent, str]:
    """A new token (the old one stops working); also re-activates a revoked agent."""
    agent = await _get(session, agent_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent.token_hash, agent.revoked_at = hash_token(token), None
    await session.commit()
    return agent, token
