"""405 answers list every method the path supports in ``Allow`` (RFC 9110 15.5.6).

Starlette names only the methods of the first route whose path matched, so ``PUT /api/users`` said
``Allow: GET`` although ``POST`` is served too. The handler asks every route.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts

from echocenter.errors import error_body

__all__ = ["allowed_methods", "install_method_not_allowed"]


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        regex = getattr(context, "path_regex", None)
        if context.methods and regex is not None and regex.match(path):
            methods |= context.methods
    return methods


async def _on_method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    allow = allowed_methods(request.app, request.url.path)
    own = getattr(exc, "headers", None) or {}  # a mount (static files) names its methods itself
    return JSONResponse(
        error_body("method_not_allowed", f"{request.method} is not allowed here"),
        status_code=405,
        headers={"Allow": ", ".join(sorted(allow))} if allow else own,
    )


def install_method_not_allowed(app: FastAPI) -> None:
    app.add_exception_handler(405, _on_method_not_allowed)
