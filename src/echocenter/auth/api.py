from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from echocenter.api.deps import SessionDep, SettingsDep
from echocenter.api.error_docs import errors
from echocenter.auth import service
from echocenter.auth.deps import CurrentAdmin, CurrentUser, PasswordsDep
from echocenter.auth.schemas import LoginRequest, LoginResponse, UserCreate, UserOut, UserUpdate
from echocenter.auth.tokens import issue_token

router = APIRouter(prefix="/api", tags=["auth"])

UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="user id")]


def _client_address(request: Request) -> str:
    # Behind a reverse proxy: the forwarded address, when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS).
    return request.client.host if request.client else "unknown"


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    summary="Exchange username and password for a JWT",
    responses=errors(401, 429),
)
async def login(
    body: LoginRequest, request: Request, settings: SettingsDep, passwords: PasswordsDep, session: SessionDep
) -> LoginResponse:
    user = await service.authenticate(
        session,
        passwords=passwords,
        username=body.username,
        password=body.password,
        client=_client_address(request),
        policy=service.LoginPolicy(
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
            max_failures_per_client=settings.login_max_failures_per_client,
        ),
    )
    token = issue_token(
        secret=settings.jwt_secret,
        user_id=user.id,
        role=user.role,
        stamp=user.token_stamp,
        expire_minutes=settings.jwt_expire_minutes,
    )
    return LoginResponse(
        token=token, expires_in=settings.jwt_expire_minutes * 60, user=UserOut.model_validate(user)
    )


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out everywhere: every token of the calling user stops working",
)
async def logout(user: CurrentUser, session: SessionDep) -> Response:
    await service.revoke_tokens(session, user_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", response_model=UserOut, summary="The user of the presented token")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut], summary="List users")
async def list_users(_: CurrentAdmin, session: SessionDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await service.list_users(session)]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=errors(409),
)
async def create_user(
    body: UserCreate, _: CurrentAdmin, passwords: PasswordsDep, session: SessionDep
) -> UserOut:
    user = await service.create_user(
        session, passwords=passwords, username=body.username, password=body.password, role=body.role
    )
    return UserOut.model_validate(user)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Disable/enable a user, change the role or set a new password (409 for the last active admin)",
)
async def update_user(
    user_id: UserId, body: UserUpdate, _: CurrentAdmin, passwords: PasswordsDep, session: SessionDep
) -> UserOut:
    user = await service.update_user(
        session,
        passwords=passwords,
        user_id=user_id,
        disabled=body.disabled,
        role=body.role,
        password=body.password,
    )
    return UserOut.model_validate(user)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user (409 for the last active admin)",
)
async def delete_user(user_id: UserId, _: CurrentAdmin, session: SessionDep) -> Response:
    await service.delete_user(session, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/users/{user_id}/revoke-tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke every token issued to the user so far (server-side logout)",
)
async def revoke_tokens(user_id: UserId, _: CurrentAdmin, session: SessionDep) -> Response:
    await service.revoke_tokens(session, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
