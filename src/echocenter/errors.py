"""Domain errors, mapped to HTTP once (see ``install_error_handlers``).

    EchoCenterError                  500 internal_error (never shows internals)
    ├── InvalidRequest               400 invalid_request
    ├── NotAuthenticated             401 not_authenticated
    ├── PermissionDenied             403 permission_denied
    ├── NotFound                     404 not_found
    ├── Conflict                     409 conflict
    │   └── ConnectorNotVerified     409 connector_not_verified
    ├── PayloadTooLarge              413 payload_too_large
    └── TooManyRequests              429 too_many_requests (Retry-After)

Routers raise these; they never build HTTPException for domain errors. Every error body has one shape:
``{"error": {"code": "...", "message": "...", "fields": [{"field": "...", "message": "..."}]?}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class EchoCenterError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str = "internal error",
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the request field at fault, when there is one
        self.headers = headers


class InvalidRequest(EchoCenterError):
    status_code = 400
    code = "invalid_request"


class NotAuthenticated(EchoCenterError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(EchoCenterError):
    status_code = 403
    code = "permission_denied"


class NotFound(EchoCenterError):
    status_code = 404
    code = "not_found"


class Conflict(EchoCenterError):
    status_code = 409
    code = "conflict"


class ConnectorNotVerified(Conflict):
    code = "connector_not_verified"


class PayloadTooLarge(EchoCenterError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(EchoCenterError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


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
