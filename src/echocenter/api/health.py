"""Liveness (``/api/health``: the process answers) and readiness (``/api/health/ready``: it can do its work —
the database answers and its schema is the one this code expects). Neither needs authentication."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from alembic.script import ScriptDirectory
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from echocenter.api.deps import RuntimeDep, SessionDep
from echocenter.db.migrate import alembic_config
from echocenter.fd_limits import ACCEPT_GUARD

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 3.0


@cache
def expected_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


@router.get("/api/health", summary="Liveness and database reachability (no authentication)")
async def health(session: SessionDep) -> dict[str, Any]:
    await session.execute(text("SELECT 1"))
    # accepting_connections is false while the process is out of file descriptors (fd_limits.py).
    return {"status": "ok", **ACCEPT_GUARD.state()}


async def _problems(runtime: RuntimeDep) -> dict[str, str]:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), runtime.engine.connect() as conn:
            applied = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    except TimeoutError:
        return {"database": f"no answer within {READY_TIMEOUT_SECONDS:g} s"}
    except Exception as exc:  # what is wrong is the answer; the details stay in the process log
        return {"database": f"unreachable ({type(exc).__name__})"}
    if not ACCEPT_GUARD.accepting():
        return {"connections": "out of file descriptors: new connections are not accepted (EMFILE)"}
    if applied != expected_revisions():
        return {"migrations": f"database at {sorted(applied)}, code expects {sorted(expected_revisions())}"}
    return {}


@router.get(
    "/api/health/ready",
    summary="Readiness: 200 when the database answers and migrations are current, else 503 with reasons",
    responses={503: {"description": "Not ready; the body names what is wrong"}},
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    problems = await _problems(runtime)
    if not problems:
        return JSONResponse({"status": "ready", "checks": {}})
    message = "; ".join(f"{name}: {what}" for name, what in problems.items())
    body: dict[str, Any] = {
        "status": "unavailable",
        "checks": problems,
        "error": {"code": "not_ready", "message": message},
    }
    return JSONResponse(body, status_code=503)
