"""Users and login, with failed-login throttling kept in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.auth.passwords import Passwords
from echocenter.db.models import LoginAttempt, Role, User
from echocenter.db.types import utcnow
from echocenter.errors import Conflict, NotAuthenticated, TooManyRequests


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int
    lockout_seconds: int


def _throttle_key(username: str) -> str:
    return username.strip().lower()[:128]


async def authenticate(
    session: AsyncSession, *, passwords: Passwords, username: str, password: str, policy: LoginPolicy
) -> User:
    """Return the user, or raise NotAuthenticated (wrong credentials) / TooManyRequests (locked out).

    The lock-out is per username whether the user exists or not, so it reveals nothing about which exist.
    """
    now = utcnow()
    key = _throttle_key(username)
    attempt = await session.get(LoginAttempt, key)
    if attempt and attempt.locked_until and attempt.locked_until > now:
        wait = int((attempt.locked_until - now).total_seconds()) + 1
        raise TooManyRequests(f"too many failed logins: try again in {wait} s", retry_after=wait)

    user = await session.scalar(select(User).where(User.username == username))
    await session.commit()  # hold no transaction during the (deliberately slow) hash
    ok = await passwords.verify(user.password_hash if user else None, password)
    if ok and user is not None and user.is_active:
        if attempt:
            await session.delete(attempt)
            await session.commit()
        return user

    if attempt is None:
        attempt = LoginAttempt(key=key, failures=0, last_failure_at=now)
        session.add(attempt)
    elif attempt.locked_until and attempt.locked_until <= now:
        attempt.failures, attempt.locked_until = 0, None  # the lock-out is served: start counting again
    attempt.failures += 1
    attempt.last_failure_at = now
    if attempt.failures >= policy.max_failures:
        attempt.locked_until = now + timedelta(seconds=policy.lockout_seconds)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()  # a concurrent failure created the row first; its count stands
    raise NotAuthenticated("invalid username or password")


async def create_user(
    session: AsyncSession, *, passwords: Passwords, username: str, password: str, role: Role
) -> User:
    user = User(username=username, password_hash=await passwords.hash(password), role=role.value)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"user {username!r} already exists") from exc
    return user


async def ensure_initial_admin(
    session: AsyncSession, *, passwords: Passwords, username: str, password: str
) -> bool:
    """Create the configured first admin unless that username exists. True when it was created.

    Race-free: instances started together all try, the unique username lets one win, the others move on.
    """
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        return False
    try:
        await create_user(session, passwords=passwords, username=username, password=password, role=Role.ADMIN)
    except Conflict:
        return False  # another instance created it between the check and the insert
    return True


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.id)))


async def prune_login_attempts(session: AsyncSession, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Forget failure counters nobody has touched for a while (unknown usernames would pile up otherwise)."""
    now = utcnow()
    result = await session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.last_failure_at < now - older_than,
            (LoginAttempt.locked_until.is_(None)) | (LoginAttempt.locked_until < now),
        )
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
