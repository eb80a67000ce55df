"""Pacing sends to Feishu in advance, so its quotas are never met (GCRA: a token bucket kept as the
"theoretical arrival time" of the next request).

A send names the quota keys it draws on (the app per second and per minute, the chat, or the card a PATCH
targets); it is given one time at which it conforms to ALL of them, and every key is advanced from that same
time, so a send held back by one key never lets another key burst later.

- Per-second quotas are paced as strict spacing (no burst) at ``HEADROOM`` of the quota: Feishu counts in
  any window of one second, and network jitter must not push two sends closer than the quota allows.
- The per-minute app quota allows a burst of half of it, then half the rate: no 60 s window can see more
  than the quota, whatever the traffic looks like.

``MemoryPacer`` serves one instance (SQLite). ``PostgresPacer`` keeps the same state in the
``outbox_pacing`` table and reserves under row locks, so several instances share one budget per key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.models import OutboxPacing

HEADROOM = 0.9  # pace at 90 % of a per-second quota


@dataclass(frozen=True, slots=True)
class Quota:
    key: str
    interval: float  # seconds between two sends at the sustained rate
    tolerance: float = 0.0  # how far ahead of its slot a send may go (burst = tolerance / interval + 1)


def per_second(key: str, qps: float) -> Quota | None:
    return Quota(key, 1.0 / (qps * HEADROOM)) if qps > 0 else None


def per_minute(key: str, limit: int) -> Quota | None:
    if limit <= 0:
        return None
    half = max(1, limit // 2)
    interval = 60.0 / half
    return Quota(key, interval, tolerance=(half - 1) * interval)


def schedule(tats: dict[str, float], quotas: list[Quota], now: float) -> tuple[float, dict[str, float]]:
    """When a send drawing on ``quotas`` may go, and the keys' new theoretical arrival times."""
    at = now
    for quota in quotas:
        at = max(at, tats.get(quota.key, now) - quota.tolerance)
    return at, {q.key: max(tats.get(q.key, now), at) + q.interval for q in quotas}


class MemoryPacer:
    def __init__(self) -> None:
        self._tats: dict[str, float] = {}

    async def reserve(self, quotas: list[Quota]) -> float:
        """The epoch time at which to send (no await between reading and writing: atomic in asyncio)."""
        now = time.time()
        at, new = schedule(self._tats, quotas, now)
        self._tats.update(new)
        if len(self._tats) > 50_000:  # forget keys long idle (chats and cards come and go)
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return at


class PostgresPacer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def reserve(self, quotas: list[Quota]) -> float:
        if not quotas:
            return time.time()
        keys = sorted(q.key for q in quotas)  # one lock order for everyone: no deadlock
        async with self._sessions() as session, session.begin():
            await session.execute(
                pg_insert(OutboxPacing)
                .values([{"key": k, "tat": 0.0} for k in keys])
                .on_conflict_do_nothing(index_elements=["key"])
            )
            rows = await session.execute(
                select(OutboxPacing.key, OutboxPacing.tat)
                .where(OutboxPacing.key.in_(keys))
                .order_by(OutboxPacing.key)
                .with_for_update()
            )
            now = time.time()
            at, new = schedule({k: t for k, t in rows.all()}, quotas, now)
            for key in keys:
                await session.execute(
                    update(OutboxPacing).where(OutboxPacing.key == key).values(tat=new[key])
                )
        return at
