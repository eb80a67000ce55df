"""FastAPI dependencies as Annotated aliases: SessionDep, RuntimeDep, BridgeDep, CurrentUser, CurrentAdmin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.auth.tokens import read_token, stamps_match
from echocenter.db.models import Role, User
from echocenter.errors import NotAuthenticated, PermissionDenied
from echocenter.feishu.bridge import FeishuBridge
from echocenter.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_bridge(request: Request) -> FeishuBridge:
    bridge: FeishuBridge = request.app.state.bridge
    return bridge


BridgeDep = Annotated[FeishuBridge, Depends(get_bridge)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

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
