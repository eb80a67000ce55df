"""The agent frame reader alone: ASGI receive messages in, a JSON object or the close code out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from echocenter.agents.frames import MAX_DEPTH, FrameRefused, read_frame


def _nested(depth: int) -> str:
    """A result whose ``extra`` field holds ``depth`` nested lists."""
    return '{"type": "result", "extra": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "websocket.receive", "bytes": b"{}"}, 1003),
        ({"type": "websocket.receive", "text": None, "bytes": b"\x00"}, 1003),
        ({"type": "websocket.receive", "text": ""}, 1007),
        ({"type": "websocket.receive", "text": "{"}, 1007),
        ({"type": "websocket.receive", "text": '"a string"'}, 1007),
        ({"type": "websocket.receive", "text": "null"}, 1007),
        ({"type": "websocket.receive", "text": "[" * 200_000}, 1007),
        ({"type": "websocket.receive", "text": _nested(MAX_DEPTH)}, 1007),
    ],
)
def test_anything_but_a_json_object_in_a_text_frame_is_refused(message: dict[str, Any], code: int) -> None:
    with pytest.raises(FrameRefused) as refused:
        read_frame(message)
    assert refused.value.close_code == code
    assert refused.value.reason


def test_a_json_object_within_the_depth_limit_is_read() -> None:
    result = {"type": "result", "request_id": "r1", "ok": True, "output": "up 3 days"}
    assert read_frame({"type": "websocket.receive", "text": json.dumps(result)}) == result
    assert read_frame({"type": "websocket.receive", "text": _nested(MAX_DEPTH - 2)})["type"] == "result"
