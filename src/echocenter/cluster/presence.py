"""Which instance holds which agent's socket, in the database so every instance sees every agent.

Writes are buffered and flushed in a few statements (issue 15: 20,000 agents' heartbeats must cost little),
so a socket's read loop never waits on the database. A connect or disconnect wakes the flusher at once; a
heartbeat waits for the next flush. An agent counts as online when its row's instance is alive.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.cluster.upsert import upsert
from echocenter.db.models import Agent, AgentPresence, Instance
from echocenter.db.types import utcnow
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

# Ids per statement. SQLAlchemy renders each IN (…) list on the event loop (about 8 ms per 5,000 ids on this
# 2-core machine), so a round of 20,000 heartbeats is written in short steps, the loop free between them.
CHUNK = 1000
COALESCE_SECONDS = 0.05  # after a wake-up, gather what else arrives before writing


class PresenceBuffer:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, instance_id: str, flush_seconds: float
    ) -> None:
        self._sessions = sessions
        self.instance_id = instance_id
        self._flush_seconds = flush_seconds
        self._changes: dict[int, bool] = {}  # agent_id -> connected (the latest change wins)
        self._beats: set[int] = set()
        self._wake = asyncio.Event()
        self.flushed = 0  # flushes done (tests and metrics)

    def connected(self, agent_id: int) -> None:
        self._changes[agent_id] = True
        self._wake.set()

    def disconnected(self, agent_id: int) -> None:
        self._changes[agent_id] = False
        self._wake.set()

    def heartbeat(self, agent_id: int) -> None:
        self._beats.add(agent_id)

    async def forget_mine(self) -> None:
        """At start: rows left by an earlier life of this instance id are stale (its sockets are gone)."""
        async with self._sessions() as session:
            await session.execute(delete(AgentPresence).where(AgentPresence.instance_id == self.instance_id))
            await session.commit()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
                await asyncio.sleep(COALESCE_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # the database is away: keep what was not written for the next round
                log_event(log, "presence_flush_failed", level=logging.WARNING, error=type(exc).__name__)

    async def flush(self) -> None:
        changes, beats = self._changes, self._beats
        if not changes and not beats:
            return
        self._changes, self._beats = {}, set()
        now = utcnow()
        up = [agent_id for agent_id, on in changes.items() if on]
        down = [agent_id for agent_id, on in changes.items() if not on]
        seen = sorted(beats | set(up))
        try:
            async with self._sessions() as session:
                await upsert(
                    session,
                    AgentPresence.__table__,  # type: ignore[arg-type]
                    [
                        {
                            "agent_id": a,
                            "instance_id": self.instance_id,
                            "connected_at": now,
                            "heartbeat_at": now,
                        }
                        for a in up
                    ],
                    keys=["agent_id"],
                    update=["instance_id", "connected_at", "heartbeat_at"],
                )
                for part in _chunks(down):
                    await session.execute(
                        delete(AgentPresence).where(
                            AgentPresence.agent_id.in_(part), AgentPresence.instance_id == self.instance_id
                        )
                    )
                for part in _chunks(seen):
                    await session.execute(
                        update(AgentPresence)
                        .where(
                            AgentPresence.agent_id.in_(part), AgentPresence.instance_id == self.instance_id
                        )
                        .values(heartbeat_at=now)
                    )
                    await session.execute(update(Agent).where(Agent.id.in_(part)).values(last_seen_at=now))
                await session.commit()
        except BaseException:
            for agent_id, on in changes.items():  # put back, unless something newer arrived meanwhile
                self._changes.setdefault(agent_id, on)
            self._beats |= beats
            raise
        self.flushed += 1


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


async def online_agents(session: AsyncSession, *, timeout: timedelta) -> dict[str, str]:
    """Agent name → the instance holding it, for agents held by a live instance (revoked ones excluded)."""
    query = (
        select(Agent.name, AgentPresence.instance_id)
        .join(AgentPresence, AgentPresence.agent_id == Agent.id)
        .join(Instance, Instance.instance_id == AgentPresence.instance_id)
        .where(Instance.heartbeat_at > utcnow() - timeout, Agent.revoked_at.is_(None))
    )
    return {name: instance for name, instance in (await session.execute(query)).all()}
