"""The one place EchoCenter's exceptions become HTTP answers: a handler for the tree's root (errors.py), one
for request validation, one for Starlette's own HTTP errors, and a last one that hides anything else.

A class's ``status_code`` and ``code`` decide its answer, so a new exception needs no handler of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from echocenter.errors import EchoCenterError, error_body

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "allowed_chat_ids", 2) -> "allowed_chat_ids[2]"; ("path", "connector_id") -> "connector_id"
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _validation_message(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "is not a field that can be set"
    if err.get("type") == "json_invalid":
        return "is not valid JSON"
    return str(err.get("msg", "is invalid"))


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EchoCenterError)
    if exc.status_code >= 500:
        log.error("unhandled_domain_error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
    fields = [{"field": exc.field, "message": exc.message}] if exc.field else None
    return JSONResponse(
        error_body(exc.code, exc.message, fields), status_code=exc.status_code, headers=exc.headers
    )


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"field": _field_name(tuple(e["loc"])), "message": _validation_message(e)} for e in exc.errors()
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse(error_body("validation_error", summary, fields), status_code=422)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated", 403: "permission_denied"}
    code = codes.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EchoCenterError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
