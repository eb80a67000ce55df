"""Refuse the NUL character in every request value, on every route, before anything is stored.

PostgreSQL cannot store U+0000 in text or JSON columns (SQLite can), so a NUL that reached the database gave a
500 on one backend and was kept on the other. One app-wide dependency checks path and query parameters and
the parsed JSON body (keys and string values, however deep) and answers 422 ``validation_error`` naming the
field, the same on both databases and for routes added later. Routes that read their raw body themselves
(Feishu's callback) declare no body model and are left to their own parsing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

__all__ = ["NUL_MESSAGE", "refuse_nul_characters"]

NUL = "\x00"
NUL_MESSAGE = "must not contain a NUL character (U+0000)"


def _strings_with_nul(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """The locations of strings (and object keys) holding a NUL; iterative, so depth cannot recurse."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                yield where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and NUL in key:
                    yield (*where, key.replace(NUL, "\\u0000"))
                stack.append((child, (*where, key)))
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))


async def _json_body(request: Request) -> Any:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return None
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return None  # not parsed as JSON by FastAPI either: the body model refuses it
    try:
        return await request.json()  # FastAPI parsed it already; Starlette hands back the cached value
    except ValueError:
        return None  # unreadable JSON is FastAPI's json_invalid error


async def refuse_nul_characters(connection: HTTPConnection) -> None:
    """An app-wide dependency (HTTP routes and WebSockets alike)."""
    found: list[tuple[str | int, ...]] = []
    for name, value in connection.path_params.items():
        found.extend(_strings_with_nul(value, ("path", name)))
    for name, value in connection.query_params.multi_items():
        found.extend(_strings_with_nul(value, ("query", name)))
    if isinstance(connection, Request):
        found.extend(_strings_with_nul(await _json_body(connection), ("body",)))
    if found:
        errors = [{"type": "nul_character", "loc": loc, "msg": NUL_MESSAGE, "input": None} for loc in found]
        if isinstance(connection, Request):
            raise RequestValidationError(errors)
        raise WebSocketRequestValidationError(errors)  # FastAPI closes the handshake with 1008
