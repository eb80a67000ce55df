"""The caller's identity as FastAPI dependencies: CurrentUser, CurrentAdmin; and PasswordsDep (the hasher
the app holds)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from echocenter.api.deps import RuntimeDep, SessionDep, from_app_state
from echocenter.auth.passwords import Passwords
from echocenter.auth.tokens import read_token, stamps_match
from echocenter.db.models import Role, User
from echocenter.errors import NotAuthenticated, PermissionDenied

PasswordsDep = Annotated[Passwords, from_app_state("passwords")]

_bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/auth/login")


async def get_current_user(
    runtime: RuntimeDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise NotAuthenticated("missing bearer token")
    claims = read_token(credentials.credentials, secret=runtime.settings.jwt_secret)
    # The role is read from the database, not the token: a demoted or removed user loses access at once. The
    # stamp binds the token to this user identity and its current sessions (see auth/tokens.py).
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active or not stamps_match(user.token_stamp, claims.stamp):
        raise NotAuthenticated("this token was revoked or its user no longer exists: log in again")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN.value:
        raise PermissionDenied("this action requires the ADMIN role")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin)]
