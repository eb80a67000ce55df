"""Agent registration: a token shown once, only its SHA-256 stored (tokens are random, so no slow hash)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import Agent
from echocenter.db.types import utcnow
from echocenter.errors import Conflict, NotFound

TOKEN_PREFIX = "eca_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def register(session: AsyncSession, *, name: str) -> tuple[Agent, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent = Agent(name=name, token_hash=hash_token(token), created_at=utcnow())
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


async def revoke(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    if agent.revoked_at is None:
        agent.revoked_at = utcnow()
        await session.commit()
    return agent


async def rotate_token(session: AsyncSession, agent_id: int) -> tuple[Agent, str]:
    """A new token (the old one stops working); also re-activates a revoked agent."""
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent.token_hash, agent.revoked_at = hash_token(token), None
    await session.commit()
    return agent, token
