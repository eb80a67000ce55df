"""The admin page: static files served by the service itself (no build step).

The page itself is served at ``/`` only; ``/static`` serves its assets and refuses HTML, so the app cannot be
opened at a second address. Security headers come from ``SecurityHeaders`` for every response.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB = Path(__file__).parent.parent / "web"

router = APIRouter(include_in_schema=False)


class AssetFiles(StaticFiles):
    """Static assets (scripts, styles, images) only: an HTML file is not served from a static folder."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path.lower().rstrip("/").endswith((".html", ".htm", ".j2")):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", AssetFiles(directory=WEB), name="static")
