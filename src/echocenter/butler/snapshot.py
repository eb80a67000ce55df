"""What the Butler reads before it answers, read once for all the messages answered together.

The connector's reply preferences, the agents' command lists, the agents online and the number of pending
approvals are the same for every message of a group: one read (group "commit" of reads, ``db/batching.py``)
serves them all, as the inbound pipeline reads each connector's settings once per batch. Nothing is kept
between groups, so a change is seen by the next message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.agents import service as agents
from echocenter.approvals.states import ApprovalStatus
from echocenter.db.batching import Batcher
from echocenter.db.models import Approval, FeishuConnector


@dataclass(frozen=True, slots=True)
class Prefs:
    streaming: bool = False
    reaction: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    prefs: Prefs
    agent_commands: dict[str, list[str]] = field(default_factory=dict)
    agents_online: list[str] = field(default_factory=list)
    pending_approvals: int = 0


class SnapshotReader:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        agents_online: Callable[[], Awaitable[list[str]]],
        max_batch: int = 200,
    ) -> None:
        self._sessions = sessions
        self._agents_online = agents_online
        self._reads = Batcher(self._read, max_batch=max_batch)

    async def read(self, connector_id: int) -> Snapshot:
        return await self._reads.submit(connector_id)

    async def _read(self, connector_ids: Sequence[int]) -> list[Snapshot]:
        c = FeishuConnector
        async with self._sessions() as session:
            rows = await session.execute(
                select(c.id, c.streaming_replies, c.thinking_reaction).where(c.id.in_(set(connector_ids)))
            )
            prefs = {i: Prefs(bool(streaming), str(emoji or "")) for i, streaming, emoji in rows}
            commands = await agents.commands_by_name(session)
            pending = await session.scalar(
                select(func.count())
                .select_from(Approval)
                .where(Approval.status == ApprovalStatus.PENDING.value)
            )
        online = await self._agents_online()
        return [Snapshot(prefs.get(i, Prefs()), commands, online, int(pending or 0)) for i in connector_ids]
