"""Agent registration: a token shown once, only its SHA-256 stored (tokens are random, so no slow hash)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.agents.commands import effective
from echocenter.db.models import Agent
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


async def list_agents(session: AsyncSession) -> list[Agent]:
    return list(await session.scalars(select(Agent).order_by(Agent.name)))


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
