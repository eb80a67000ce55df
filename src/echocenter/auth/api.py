from __future__ import annotations

from fastapi import APIRouter, status

from echocenter.api.deps import CurrentAdmin, CurrentUser, RuntimeDep, SessionDep
from echocenter.api.error_docs import errors
from echocenter.auth import service
from echocenter.auth.schemas import LoginRequest, LoginResponse, UserCreate, UserOut
from echocenter.auth.tokens import issue_token

router = APIRouter(prefix="/api", tags=["auth"])


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    summary="Exchange username and password for a JWT",
    responses=errors(401, 429),
)
async def login(body: LoginRequest, runtime: RuntimeDep, session: SessionDep) -> LoginResponse:
    settings = runtime.settings
    user = await service.authenticate(
        session,
        passwords=runtime.passwords,
        username=body.username,
        password=body.password,
        policy=service.LoginPolicy(settings.login_max_failures, settings.login_lockout_seconds),
    )
    token = issue_token(
        secret=settings.jwt_secret,
        user_id=user.id,
        role=user.role,
        expire_minutes=settings.jwt_expire_minutes,
    )
    return LoginResponse(
        token=token, expires_in=settings.jwt_expire_minutes * 60, user=UserOut.model_validate(user)
    )


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
async def create_user(body: UserCreate, _: CurrentAdmin, runtime: RuntimeDep, session: SessionDep) -> UserOut:
    user = await service.create_user(
        session, passwords=runtime.passwords, username=body.username, password=body.password, role=body.role
    )
    return UserOut.model_validate(user)
