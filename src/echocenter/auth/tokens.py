"""Signed admin tokens (JWT, HS256)."""

from __future__ import annotations

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


def issue_token(*, secret: str, user_id: int, role: str, expire_minutes: int) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "role": role,
        "iss": _ISSUER,
        "iat": now,
        "exp": now + timedelta(minutes=expire_minutes),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def read_token(token: str, *, secret: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[_ALGORITHM], issuer=_ISSUER, options={"require": ["exp", "sub", "iss"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("token expired: log in again") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthenticated("invalid token") from exc
    try:
        return TokenClaims(user_id=int(claims["sub"]), role=str(claims.get("role", "")))
    except (TypeError, ValueError) as exc:
        raise NotAuthenticated("invalid token") from exc
