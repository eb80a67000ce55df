from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from echocenter.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/api/health", summary="Liveness and database reachability (no authentication)")
async def health(session: SessionDep) -> dict[str, str]:
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}
