"""What keeps the HTTP callback from being abused: replays refused across instances (the database remembers
each accepted signature for the timestamp window) and rejections logged once per connector and reason per
interval, so a flood of bad requests cannot fill the integration log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import CallbackReplay
from echocenter.db.types import utcnow

MAX_THROTTLE_KEYS = 10_000  # bounds the memory an attacker can make the throttle hold


async def first_sighting(session: AsyncSession, *, connector_id: int, signature: str) -> bool:
    """Remember a signed request; False if it was seen before (a replay), on this instance or another."""
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        dialect_insert(CallbackReplay)
        .values(connector_id=connector_id, signature=signature.lower(), seen_at=utcnow())
        .on_conflict_do_nothing(index_elements=["connector_id", "signature"])
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def forget_sightings(session: AsyncSession, *, window_seconds: int, now: datetime | None = None) -> int:
    """Drop signatures older than twice the window: a replay that old fails the timestamp check anyway."""
    cutoff = (now or utcnow()) - timedelta(seconds=2 * window_seconds)
    result = await session.execute(delete(CallbackReplay).where(CallbackReplay.seen_at < cutoff))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(slots=True)
class _Window:
    started: float
    repeats: int = 0


class RejectionThrottle:
    """One log entry per (connector, reason) per interval; the next entry says how many were not logged."""

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._windows: dict[tuple[int | None, str], _Window] = {}

    def admit(self, connector_id: int | None, reason: str) -> int | None:
        """None: count it and log nothing; otherwise log it, with this many earlier repeats left unlogged."""
        now = time.monotonic()
        key = (connector_id, reason)
        window = self._windows.get(key)
        if window is not None and now - window.started < self._interval:
            window.repeats += 1
            return None
        if len(self._windows) >= MAX_THROTTLE_KEYS:
            self._windows.clear()
        self._windows[key] = _Window(now)
        return window.repeats if window is not None else 0
