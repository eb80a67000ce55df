"""Failed-login counters in the database, counted atomically *before* a password is checked.

Each login first claims a slot on its counters with one ``INSERT … ON CONFLICT DO UPDATE SET failures =
failures + 1 … RETURNING failures`` (SQLite and PostgreSQL alike). The update happens only while the counter
is below its limit (or the last attempt is older than the window, which starts the count again), so a locked
key returns no row and the attempt is refused without hashing anything. Attempts in flight therefore count:
20 simultaneous tries against a limit of 5 verify at most 5 passwords. A success gives its slots back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import LoginAttempt
from echocenter.db.types import UTCDateTime

_attempts = LoginAttempt.__table__


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    limit: int  # attempts (failed or in flight) before the key is locked
    window_seconds: int  # a lock lasts this long after the last counted attempt; older ones are forgotten


def user_key(normalized_username: str, client: str) -> str:
    """One counter per username *and* client address: a stranger cannot lock the admin out everywhere."""
    return f"user:{normalized_username[:64]}@{client[:48]}"


def client_key(client: str) -> str:
    """One counter per client address, over every username it tries."""
    return f"client:{client[:48]}"


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def claim(session: AsyncSession, *, key: str, rule: ThrottleRule, now: datetime) -> int | None:
    """Count one attempt for ``key``; the new count, or None when the key is locked (nothing is counted)."""
    window = timedelta(seconds=rule.window_seconds)
    stale = _attempts.c.last_failure_at <= now - window  # the last attempt is long past: count afresh
    count = case((stale, 1), else_=_attempts.c.failures + 1)
    lock_end = literal(now + window, UTCDateTime())
    statement = (
        _insert(session)(_attempts)
        .values(
            key=key, failures=1, last_failure_at=now, locked_until=now + window if rule.limit <= 1 else None
        )
        .on_conflict_do_update(
            index_elements=[_attempts.c.key],
            set_={
                "failures": count,
                "last_failure_at": now,
                "locked_until": case((count >= rule.limit, lock_end), else_=None),
            },
            where=(_attempts.c.failures < rule.limit) | stale,
        )
        .returning(_attempts.c.failures)
    )
    failures = (await session.execute(statement)).scalar_one_or_none()
    return None if failures is None else int(failures)


async def release(session: AsyncSession, *, key: str) -> None:
    """Give back a slot claimed by an attempt that turned out not to be a failure."""
    await session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.key == key, LoginAttempt.failures > 0)
        .values(failures=LoginAttempt.failures - 1, locked_until=None)
    )


async def reset(session: AsyncSession, *, key: str) -> None:
    await session.execute(delete(LoginAttempt).where(LoginAttempt.key == key))


async def seconds_locked(session: AsyncSession, *, key: str, rule: ThrottleRule, now: datetime) -> int:
    """How long a locked key stays locked (for Retry-After)."""
    last = await session.scalar(select(LoginAttempt.last_failure_at).where(LoginAttempt.key == key))
    if last is None:
        return 1
    return max(1, int((last + timedelta(seconds=rule.window_seconds) - now).total_seconds()) + 1)


async def prune(session: AsyncSession, *, older_than: timedelta, now: datetime) -> int:
    """Forget counters nobody has touched for a while (unknown usernames would pile up otherwise)."""
    result = await session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.last_failure_at < now - older_than,
            (LoginAttempt.locked_until.is_(None)) | (LoginAttempt.locked_until < now),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
