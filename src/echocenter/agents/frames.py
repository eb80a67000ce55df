"""What an agent may send over its WebSocket, and the close code for everything else.

A pure function over one ASGI ``websocket.receive`` message: a JSON object in a text frame is a message;
anything else is refused with the RFC 6455 close code that names the fault, so the agent's author learns why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from echocenter.errors import MalformedData

__all__ = ["MAX_DEPTH", "FrameRefused", "read_frame"]

UNSUPPORTED_DATA = 1003  # RFC 6455 7.4.1: a type of data the endpoint cannot accept (binary)
INVALID_PAYLOAD = 1007  # data not consistent with the message type (not JSON, not an object, too deep)
MAX_DEPTH = 32  # our messages are two levels deep; deeper values could not be printed without recursion


class FrameRefused(MalformedData):
    """A frame refused, with the close code that names the fault and the reason sent with it."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


def _deeper_than(value: Any, limit: int) -> bool:
    """True when containers nest deeper than ``limit``; iterative, so it cannot recurse itself."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def read_frame(message: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of a ``websocket.receive`` message, or ``FrameRefused``."""
    text = message.get("text")
    if text is None:
        raise FrameRefused(UNSUPPORTED_DATA, "binary frames are not supported: send JSON text")
    try:
        value = json.loads(text)
    except RecursionError as exc:  # the parser's own guard (about 1000 levels)
        raise FrameRefused(INVALID_PAYLOAD, f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise FrameRefused(INVALID_PAYLOAD, "the frame is not valid JSON") from exc
    if _deeper_than(value, MAX_DEPTH):
        raise FrameRefused(INVALID_PAYLOAD, f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        raise FrameRefused(INVALID_PAYLOAD, "a frame must be a JSON object")
    return value
