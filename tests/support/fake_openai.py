"""A local OpenAI-compatible chat-completions server whose next answers the test chooses.

With ``"stream": true`` in the request it answers as the real API does: server-sent events of
``chat.completion.chunk`` objects (the text word by word, ``token_delay`` apart; a tool call as a name delta
then argument pieces), ending with ``data: [DONE]``."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
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
    token_delay: float = 0.0  # seconds between streamed chunks
    first_token_at: list[float] = field(default_factory=list)  # time.time() of each stream's first chunk

    async def _chunks(self, answer: dict[str, Any], model: str) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(re.findall(r"\S+\s*|\s+", answer.get("content") or "")):
            if i == 0:
                self.first_token_at.append(time.time())
            elif self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield chunk({"content": word})
        for index, call in enumerate(answer.get("tool_calls") or []):
            function = call["function"]
            head = {"index": index, "id": call["id"], "type": "function"}
            yield chunk({"tool_calls": [{**head, "function": {"name": function["name"], "arguments": ""}}]})
            arguments = function["arguments"]
            for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if answer.get("tool_calls") else "stop")
        yield b"data: [DONE]\n\n"

    async def completions(self, request: Request) -> JSONResponse | StreamingResponse:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        answer = self.answers.pop(0) if self.answers else text_answer("(no answer scripted)")
        if isinstance(answer, int):
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}}, status_code=answer
            )
        if body.get("stream"):
            return StreamingResponse(self._chunks(answer, body["model"]), media_type="text/event-stream")
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
