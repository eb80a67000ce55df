"""Each instance's heartbeat row; an instance silent for INSTANCE_TIMEOUT_SECONDS no longer counts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.cluster.upsert import upsert
from echocenter.db.models import Instance
from echocenter.db.types import utcnow


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

    async def leave(self) -> None:
        async with self._sessions() as session:
            await session.execute(delete(Instance).where(Instance.instance_id == self.instance_id))
            await session.commit()


async def live_instances(session: AsyncSession, *, timeout: timedelta) -> list[str]:
    query = select(Instance.instance_id).where(Instance.heartbeat_at > utcnow() - timeout)
    return sorted(await session.scalars(query.order_by(Instance.instance_id)))
