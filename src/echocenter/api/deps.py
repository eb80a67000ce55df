"""FastAPI dependencies as Annotated aliases for what every router shares: RuntimeDep, SettingsDep,
SessionDep, SessionsDep, BusDep; and ``from_app_state``, with which each domain declares its own services.

This module sits low (it imports no domain package): the routers of every domain import it, so it must not
import them back. A domain's service deps live in that domain (``feishu/deps.py``: BridgeDep…), the user
deps in ``auth/deps.py`` (CurrentUser, CurrentAdmin). app.py's wiring is what puts them on ``app.state``;
no router reads ``request.app.state`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.cluster.bus import EventBus
from echocenter.runtime import Runtime
from echocenter.settings import Settings


def from_app_state(name: str) -> Any:
    """``Depends`` on ``app.state.<name>``; the Annotated alias that uses it declares the type."""

    def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    read.__name__ = f"app_state_{name}"
    return Depends(read)


RuntimeDep = Annotated[Runtime, from_app_state("runtime")]
BusDep = Annotated[EventBus, from_app_state("bus")]


def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_sessions(runtime: RuntimeDep) -> async_sessionmaker[AsyncSession]:
    return runtime.sessions


SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
