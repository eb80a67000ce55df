"""Users, login and user management. Failed-login counting lives in ``throttle``; the rules in ``rules``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.auth import throttle
from echocenter.auth.passwords import Passwords
from echocenter.auth.tokens import new_token_stamp
from echocenter.credential_rules import normalize_username, password_problem, username_problem
from echocenter.db.models import Role, User
from echocenter.db.types import utcnow
from echocenter.errors import Conflict, InvalidRequest, NotAuthenticated, NotFound, TooManyRequests
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int  # per username and client address
    lockout_seconds: int
    max_failures_per_client: int  # per client address, over every username


async def authenticate(
    session: AsyncSession,
    *,
    passwords: Passwords,
    username: str,
    password: str,
    client: str,
    policy: LoginPolicy,
) -> User:
    """Return the user, or raise NotAuthenticated (wrong credentials) / TooManyRequests (locked out or busy).

    Both counters are claimed before the password is checked (see ``throttle``); a refusal checks nothing. The
    lock-out is per username whether the user exists or not, so it reveals nothing about which exist.
    """
    name = normalize_username(username)
    rules = {
        throttle.client_key(client): throttle.ThrottleRule(
            policy.max_failures_per_client, policy.lockout_seconds
        ),
        throttle.user_key(name, client): throttle.ThrottleRule(policy.max_failures, policy.lockout_seconds),
    }
    counts = await _claim_attempt(session, rules)
    user = await find_user(session, name)
    await session.commit()  # hold no transaction during the (deliberately slow) hash

    try:
        ok = await passwords.verify(user.password_hash if user else None, password)
    except TooManyRequests:  # no hashing slot came free: nothing was checked, so nothing failed
        for key in counts:
            await throttle.release(session, key=key)
        await session.commit()
        raise
    if ok and user is not None and user.is_active:
        client_key, user_key = rules  # touched in the order they were claimed: no lock-order deadlock
        await throttle.release(session, key=client_key)
        await throttle.reset(session, key=user_key)
        await session.commit()
        return user
    _log_lockouts(rules, counts, username=name, client=client)
    raise NotAuthenticated("invalid username or password")


async def _claim_attempt(session: AsyncSession, rules: dict[str, throttle.ThrottleRule]) -> dict[str, int]:
    """Claim one attempt on each counter, in order: the counts, or TooManyRequests when one is locked
    (the counters claimed before it are handed back: a refused attempt is not a failure)."""
    now = utcnow()
    counts: dict[str, int] = {}
    for key, rule in rules.items():
        count = await throttle.claim(session, key=key, rule=rule, now=now)
        if count is None:
            for claimed in counts:
                await throttle.release(session, key=claimed)
            wait = await throttle.seconds_locked(session, key=key, rule=rule, now=now)
            await session.commit()
            raise TooManyRequests(f"too many failed logins: try again in {wait} s", retry_after=wait)
        counts[key] = count
    return counts


def _log_lockouts(
    rules: dict[str, throttle.ThrottleRule], counts: dict[str, int], *, username: str, client: str
) -> None:
    # The audit trail of a lock-out is this structured process-log line (not the integration logs, whose
    # rows belong to connectors): admins see who was locked, from where, and for how long.
    for key, rule in rules.items():
        if counts[key] >= rule.limit:
            log_event(
                log,
                "login_locked_out",
                level=logging.WARNING,
                key=key,
                username=username,
                client=client,
                failures=counts[key],
                locked_seconds=rule.window_seconds,
            )


def _check_password(password: str) -> None:
    problem = password_problem(password)
    if problem is not None:
        raise InvalidRequest(problem, field="password")


async def create_user(
    session: AsyncSession, *, passwords: Passwords, username: str, password: str, role: Role
) -> User:
    problem = username_problem(username)
    if problem is not None:
        raise InvalidRequest(problem, field="username")
    _check_password(password)
    user = User(username=username, password_hash=await passwords.hash(password), role=role.value)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"user {username!r} already exists") from exc
    return user


async def find_user(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.username) == normalize_username(username)))


async def ensure_initial_admin(
    session: AsyncSession, *, passwords: Passwords, username: str, password: str
) -> bool:
    """Create the configured first admin unless that username exists. True when it was created.

    Race-free: instances started together all try, the unique username lets one win, the others move on.
    """
    if await find_user(session, username) is not None:
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


async def _get_user_for_change(session: AsyncSession, user_id: int) -> tuple[User, list[User]]:
    """The user, plus the active admins locked (PostgreSQL: FOR UPDATE, in id order, so two admins removing
    each other at once cannot both succeed; SQLite has a single writer)."""
    admins = list(
        await session.scalars(
            select(User)
            .where(User.role == Role.ADMIN.value, User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        )
    )
    user = await session.get(User, user_id)
    if user is None:
        await session.rollback()
        raise NotFound(f"user {user_id} not found")
    return user, admins


def _keep_an_admin(user: User, admins: list[User], action: str) -> None:
    if any(admin.id == user.id for admin in admins) and len(admins) == 1:
        raise Conflict(f"cannot {action} the last active admin")


async def update_user(
    session: AsyncSession,
    *,
    passwords: Passwords,
    user_id: int,
    disabled: bool | None = None,
    role: Role | None = None,
    password: str | None = None,
) -> User:
    """Disable/enable, change the role or set a new password. Disabling and a new password revoke tokens."""
    if password is not None:
        _check_password(password)
        password_hash = await passwords.hash(password)  # before any lock is taken
    user, admins = await _get_user_for_change(session, user_id)
    try:
        if disabled is True:
            _keep_an_admin(user, admins, "disable")
        if role is not None and role is not Role.ADMIN:
            _keep_an_admin(user, admins, "demote")
    except Conflict:
        await session.rollback()
        raise
    if disabled is not None:
        user.is_active = not disabled
        if disabled:
            user.token_stamp = new_token_stamp()
    if role is not None:
        user.role = role.value
    if password is not None:
        user.password_hash = password_hash
        user.token_stamp = new_token_stamp()
    await session.commit()
    return user


async def delete_user(session: AsyncSession, *, user_id: int) -> User:
    user, admins = await _get_user_for_change(session, user_id)
    try:
        _keep_an_admin(user, admins, "delete")
    except Conflict:
        await session.rollback()
        raise
    await session.delete(user)
    await session.commit()
    return user


async def revoke_tokens(session: AsyncSession, *, user_id: int) -> User:
    """Server-side logout: every token issued to the user so far stops working."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    user.token_stamp = new_token_stamp()
    await session.commit()
    return user


async def prune_login_attempts(session: AsyncSession, *, older_than: timedelta = timedelta(days=1)) -> int:
    removed = await throttle.prune(session, older_than=older_than, now=utcnow())
    await session.commit()
    return removed
