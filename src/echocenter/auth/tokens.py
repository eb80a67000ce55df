"""Signed admin tokens (JWT, HS256), bound to one user's current token stamp.

``stp`` carries the user's ``token_stamp``, a random value drawn when the user is created and drawn again on
logout, revocation, disabling or a password change; a token whose stamp differs from the user's is refused.
So a token names one user identity (never a later user that got the same id) and can be revoked server-side.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt

from echocenter.db.types import utcnow
from echocenter.errors import NotAuthenticated

_ALGORITHM = "HS256"
_ISSUER = "echocenter"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    role: str
    stamp: str


def issue_token(*, secret: str, user_id: int, role: str, stamp: str, expire_minutes: int) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "role": role,
        "stp": stamp,
        "iss": _ISSUER,
        "iat": now,
        "exp": now + timedelta(minutes=expire_minutes),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(token: str, *, secret: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("token expired: log in again") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthenticated("invalid token") from exc
    try:
        return TokenClaims(
            user_id=int(claims["sub"]),
            role=str(claims.get("role", "")),
            stamp=str(claims.get("stp", "")),  # none: matches no user
        )
    except (TypeError, ValueError) as exc:
        raise NotAuthenticated("invalid token") from exc


def new_token_stamp() -> str:
    return secrets.token_hex(16)


def stamps_match(user_stamp: str | None, token_stamp: str) -> bool:
    return bool(user_stamp) and hmac.compare_digest(str(user_stamp).encode(), token_stamp.encode())
