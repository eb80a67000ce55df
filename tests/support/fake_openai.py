"""A local OpenAI-compatible chat-completions server whose next answers the test chooses."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def text_answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def tool_answer(agent: str, command: str, reason: str) -> dict[str, Any]:
    arguments = json.dumps({"agent": agent, "command": command, "reason": reason})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "command_agent", "arguments": arguments},
            }
        ],
    }


@dataclass
class FakeOpenAI:
    answers: list[dict[str, Any] | int] = field(
        default_factory=list
    )  # a message, or an HTTP status to fail with
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        answer = self.answers.pop(0) if self.answers else text_answer("(no answer scripted)")
        if isinstance(answer, int):
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}}, status_code=answer
            )
        finish = "tool_calls" if answer.get("tool_calls") else "stop"
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": answer, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])
