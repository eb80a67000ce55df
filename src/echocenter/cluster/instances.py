"""Each instance's heartbeat row; an instance silent for INSTANCE_TIMEOUT_SECONDS no longer counts."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.cluster.upsert import upsert
from echocenter.db.models import AgentPresence, ConnectorInstanceStatus, Instance
from echocenter.db.types import utcnow
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)


class InstanceRegistry:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, instance_id: str, timeout: float
    ) -> None:
        self._sessions = sessions
        self.instance_id = instance_id
        self.timeout = timedelta(seconds=timeout)
        self._started_at = utcnow()

    async def beat(self) -> None:
        now = utcnow()
        async with self._sessions() as session:
            await upsert(
                session,
                Instance.__table__,  # type: ignore[arg-type]
                [{"instance_id": self.instance_id, "started_at": self._started_at, "heartbeat_at": now}],
                keys=["instance_id"],
                update=["started_at", "heartbeat_at"],
            )
            await session.commit()

    async def run(self, interval: float) -> None:
        """Beat until cancelled; a missed beat (the database away) is logged and tried again."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.beat()
            except Exception as exc:
                log_event(log, "instance_heartbeat_failed", level=logging.WARNING, error=type(exc).__name__)

    async def leave(self) -> None:
        """A clean stop: out of every count at once (a crash drops out after the timeout instead)."""
        async with self._sessions() as session:
            await _forget(session, [self.instance_id])
            await session.commit()


async def live_instances(session: AsyncSession, *, timeout: timedelta) -> list[str]:
    query = select(Instance.instance_id).where(Instance.heartbeat_at > utcnow() - timeout)
    return sorted(await session.scalars(query.order_by(Instance.instance_id)))


async def prune_departed(session: AsyncSession, *, older_than: timedelta) -> int:
    """Forget instances silent this long, with their rows (instance ids change when INSTANCE_ID is unset)."""
    gone = list(
        await session.scalars(
            select(Instance.instance_id).where(Instance.heartbeat_at < utcnow() - older_than)
        )
    )
    if gone:
        await _forget(session, gone)
        await session.commit()
    return len(gone)


async def _forget(session: AsyncSession, instance_ids: list[str]) -> None:
    for model in (ConnectorInstanceStatus, AgentPresence, Instance):
        await session.execute(delete(model).where(model.instance_id.in_(instance_ids)))
