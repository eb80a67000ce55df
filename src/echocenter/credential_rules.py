"""The rules every username and password follows, whichever path sets it (API, CLI, INITIAL_ADMIN_*).

Below settings and auth alike: settings checks INITIAL_ADMIN_* with them, auth everything else."""

from __future__ import annotations

import re

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
MAX_USERNAME_LENGTH = 64
USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]+$"
_USERNAME = re.compile(USERNAME_PATTERN)


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive. The login lookup, the uniqueness rule and the throttle key all use this
    one function (and SQL ``lower()`` on stored names, which are ASCII), so ``Admin`` and ``admin`` are one
    user and share one failure counter."""
    return username.lower()


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password may have at most {MAX_PASSWORD_LENGTH} characters"
    if not password.strip():
        return "the password cannot be only spaces"
    return None


def username_problem(username: str) -> str | None:
    """Why a new username is refused, or None when it is acceptable."""
    if not 1 <= len(username) <= MAX_USERNAME_LENGTH:
        return f"the username needs 1 to {MAX_USERNAME_LENGTH} characters"
    if not _USERNAME.match(username):
        return "the username may contain only letters, digits and _ . @ -"
    return None
