from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from echocenter.api.deps import SessionDep
from echocenter.fd_limits import ACCEPT_GUARD

router = APIRouter(tags=["health"])


@router.get("/api/health", summary="Liveness and database reachability (no authentication)")
async def health(session: SessionDep) -> dict[str, Any]:
    await session.execute(text("SELECT 1"))
    # accepting_connections is false while the process is out of file descriptors (fd_limits.py).
    return {"status": "ok", **ACCEPT_GUARD.state()}
