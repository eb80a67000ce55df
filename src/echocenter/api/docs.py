"""``/docs``: Swagger UI served from the pinned ``swagger-ui-bundle-v2`` package, never from a CDN.

A script fetched from a third-party host into a page on our origin could read an admin token typed into it;
here every script is ours or the package's, the page runs under the same ``script-src 'self'`` policy as the
admin page, and the start-up code is a file, not an inline script (which that policy would refuse).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from echocenter.api.web import AssetFiles

__all__ = ["mount_docs"]

ASSETS = "/docs/assets"
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EchoCenter API</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<script src="{ASSETS}/swagger-ui-bundle.js" defer></script>
<script src="/docs/start.js" defer></script>
</head>
<body><div id="swagger-ui"></div></body>
</html>
"""
# validatorUrl null: the UI would otherwise send our spec to validator.swagger.io.
_START = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: false,
    persistAuthorization: false,
  });
});
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs_page() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})


@router.get("/docs/start.js")
async def docs_start() -> Response:
    return Response(_START, media_type="text/javascript")


def mount_docs(app: FastAPI) -> None:
    """Needs the app built with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load a CDN)."""
    app.include_router(router)
    app.mount(ASSETS, AssetFiles(directory=Path(str(swagger_ui_path))), name="docs-assets")
