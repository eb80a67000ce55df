"""The OpenAPI document tells the truth about errors: every status a route can answer, with the error body.

What follows from how a route is built is added to every route when the document is generated, so routes
added later are covered without a line of their own:

    any route                         422 validation_error (parameters, body, a NUL anywhere)
    a body (POST/PUT/PATCH)           400 unreadable body, 413 payload_too_large
    CurrentUser / CurrentAdmin        401 not_authenticated; CurrentAdmin also 403 permission_denied
    a path parameter                  404 not_found

What only the route knows (409 conflict, 429 lock-out, 400 from a service) it declares with
``responses=errors(409)``. Every error response carries the schema of ``ErrorBody``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "errors", "install_error_docs"]


class ErrorField(BaseModel):
    field: str = Field(description="the request field at fault, e.g. allowed_chat_ids[2]")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error, not_found")
    message: str
    fields: list[ErrorField] = Field(default_factory=list, description="present when fields are at fault")


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "fields"?}}``."""

    error: ErrorDetail


_MEANING = {
    400: "The request cannot be read or is not acceptable",
    401: "Missing, invalid or expired credentials",
    403: "The user's role does not allow this",
    404: "No such resource",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    422: "A parameter or body field is invalid",
    429: "Too many requests: retry after the Retry-After header's seconds",
}


_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}


def _described(code: int) -> dict[str, Any]:
    """The description of an error status, and the headers it always carries."""
    headers = {"headers": _HEADERS[code]} if code in _HEADERS else {}
    return {"description": _MEANING.get(code, "Error"), **headers}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route decorator: these error statuses, each with the error body schema."""
    return {code: {"model": ErrorBody, **_described(code)} for code in codes}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    stack = [dependant]
    while stack:
        current = stack.pop()
        yield current.call
        stack.extend(current.dependencies)


# A dependency whose presence on a route implies an error, e.g. the current user's: 401 (handed over by
# app.py: the auth deps sit above this module).
DependencyErrors = Mapping[Callable[..., Any], int]


def _implied_errors(route: Any, method: str, by_dependency: DependencyErrors) -> set[int]:
    codes = {422}
    if method in {"POST", "PUT", "PATCH"}:
        codes |= {400, 413}
    calls = set(_calls(route.dependant))
    codes |= {code for dependency, code in by_dependency.items() if dependency in calls}
    if route.dependant.path_params:
        codes.add(404)
    return codes


def _error_response(code: int) -> dict[str, Any]:
    return {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        **_described(code),
    }


def _document(spec: dict[str, Any], app: FastAPI, by_dependency: DependencyErrors) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, schema in body_schema.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorBody", body_schema)
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        for method in context.methods or ():
            operation = spec["paths"].get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in sorted(_implied_errors(context, method, by_dependency)):
                # A route's own declaration stands; FastAPI's 422 describes its default body, not ours.
                if str(code) not in responses or code == 422:
                    responses[str(code)] = _error_response(code)
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's default 422 body, now unused
        schemas.pop(name, None)


def install_error_docs(app: FastAPI, *, by_dependency: DependencyErrors) -> None:
    """Documents every route's errors in the OpenAPI document when it is built; ``by_dependency`` names the
    dependencies that imply one (e.g. ``{get_current_user: 401}``)."""
    build = app.openapi
    documented: list[dict[str, Any]] = []  # the document last completed (FastAPI rebuilds on new routes)

    def openapi() -> dict[str, Any]:
        spec = build()
        if not documented or documented[0] is not spec:
            _document(spec, app, by_dependency)
            documented[:] = [spec]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
