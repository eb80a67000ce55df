"""The Butler's brains, behind one interface: a deterministic rule brain (default, offline) and an
OpenAI-compatible LLM brain with tools (``command_agent``, ``list_agents``, ``approval_status``) that the
agent loop (butler/loop.py) drives turn by turn."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from echocenter.errors import UpstreamError
from echocenter.feishu.untrusted import inert

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    agent: str
    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for; ``arguments`` is None when they were not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the conversation as the model sees it (role: user | assistant | tool)."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class BrainReply:
    text: str = ""
    command: CommandRequest | None = None  # the rule brain: one command, its output posted as it is
    tool_calls: tuple[ToolCall, ...] = ()  # a tool-using brain: the loop runs them and calls it again


@dataclass(frozen=True, slots=True)
class BrainContext:
    text: str  # the new message; "" inside the loop, where it is already the last user turn of history
    requester: str
    history: list[Turn] = field(default_factory=list)  # oldest first
    agents_online: list[str] = field(default_factory=list)
    pending_approvals: int = 0
    agent_commands: dict[str, list[str]] = field(default_factory=dict)  # registered agents; [] = any
    summary: str = ""  # a digest of older turns trimmed from history
    notes: tuple[str, ...] = ()  # what the model must be told (a bound was reached)
    tools_allowed: bool = True
    # Optional: a brain that can stream calls this with the full text so far as it grows (never blocks);
    # one that cannot ignores it. Images (data: URLs) go to a vision-capable model with the person's
    # words: with ``text``, or else with the last user turn of ``history`` (inside the loop).
    stream: Callable[[str], None] | None = None
    images: list[str] = field(default_factory=list)


class BrainError(UpstreamError):
    """The brain could not answer (e.g. the LLM service failed)."""


class Brain(Protocol):
    # True: replies carry ``tool_calls`` and the agent loop feeds their results back (the LLM brain).
    uses_tools: bool

    async def respond(self, context: BrainContext) -> BrainReply: ...


HELP = (
    "I am the Butler. I can:\n"
    "• help — this message\n"
    "• agents — which agents are online\n"
    "• run <agent> <command> — ask to run a command; a person approves it on a card first\n"
    "• status — agents online and approvals waiting"
)


def _with_commands(context: BrainContext) -> list[str]:
    """Each online agent, with the commands it runs when it has a list."""
    named = []
    for agent in context.agents_online:
        commands = context.agent_commands.get(agent)
        named.append(f"{agent} (runs: {'; '.join(commands)})" if commands else agent)
    return named


class RuleBrain:
    """Offline and deterministic: the same words always get the same answer."""

    uses_tools = False

    async def respond(self, context: BrainContext) -> BrainReply:
        words = context.text.strip()
        verb = words.split(maxsplit=1)[0].lower() if words else ""
        if verb in ("help", "?", "/help"):
            return BrainReply(HELP)
        if verb == "agents":
            if not context.agents_online:
                return BrainReply("No agent is online right now.")
            return BrainReply("Online agents: " + ", ".join(_with_commands(context)))
        if verb == "status":
            return BrainReply(
                f"{len(context.agents_online)} agent(s) online"
                f"{' (' + ', '.join(context.agents_online) + ')' if context.agents_online else ''}; "
                f"{context.pending_approvals} approval(s) waiting for a decision."
            )
        if verb == "run":
            parts = words.split(maxsplit=2)
            if len(parts) < 3:
                return BrainReply("Usage: run <agent> <command>, for example: run demo-agent uptime")
            agent, command = parts[1], parts[2].strip()
            return BrainReply(
                f"I need a person's approval to run `{inert(command)}` on {inert(agent)}.",
                CommandRequest(agent=agent, command=command, reason=f"asked by {context.requester} in chat"),
            )
        return BrainReply(f"I did not understand {inert(shlex.quote(words[:80]))}.\n\n{HELP}")


COMMAND_TOOL_DESCRIPTION = "Ask to run a command on a connected agent. A person must approve it first."


def command_tool(agent_commands: dict[str, list[str]]) -> dict[str, Any]:
    """The command_agent tool, its description listing what each agent runs ({name} = one word)."""
    lines = [
        f"- {agent}: " + ("any command" if not commands else "; ".join(commands))
        for agent, commands in sorted(agent_commands.items())
    ]
    description = COMMAND_TOOL_DESCRIPTION
    if lines:
        description += (
            " Commands each agent runs (a {placeholder} stands for one word you fill in; anything else is "
            "refused):\n" + "\n".join(lines)
        )
    tool: dict[str, Any] = {
        **COMMAND_TOOL,
        "function": {**COMMAND_TOOL["function"], "description": description},
    }
    return tool


COMMAND_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "command_agent",
        "description": COMMAND_TOOL_DESCRIPTION,
        "parameters": {
            "type": "object",
            "properties": {
                "agent": {"type": "string", "description": "name of an online agent"},
                "command": {"type": "string", "description": "the command line to run"},
                "reason": {"type": "string", "description": "why, in one sentence, for the approver"},
            },
            "required": ["agent", "command", "reason"],
        },
    },
}


LIST_AGENTS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "list_agents",
        "description": "The registered agents: name, whether online, and the commands each runs.",
        "parameters": {"type": "object", "properties": {}},
    },
}

APPROVAL_STATUS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "approval_status",
        "description": "Where approval requests stand: one by its number, or else how many are waiting.",
        "parameters": {
            "type": "object",
            "properties": {"approval_id": {"type": "integer", "description": "the approval's number"}},
        },
    },
}


def tools_for(context: BrainContext) -> list[dict[str, Any]]:
    return [command_tool(context.agent_commands), LIST_AGENTS_TOOL, APPROVAL_STATUS_TOOL]


def _wire(turn: Turn) -> dict[str, Any]:
    """A turn in the chat-completions shape."""
    if turn.role == "tool":
        return {"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content}
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        message["content"] = turn.content or None
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments or {})},
            }
            for call in turn.tool_calls
        ]
    return message


class LLMBrain:
    uses_tools = True

    def __init__(
        self, *, base_url: str, api_token: str, model: str, timeout: float, max_retries: int = 2
    ) -> None:
        import openai  # here, not at the top: about 14 MB of RSS, only when an LLM is configured (issue 15)

        self._openai_error: type[Exception] = openai.OpenAIError
        # The SDK retries 408/409/429/5xx and connection errors with exponential backoff and honours the
        # server's Retry-After (up to 60 s); ``timeout`` bounds each attempt.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_token, timeout=timeout, max_retries=max_retries
        )
        self._model = model

    def _messages(self, context: BrainContext) -> list[dict[str, Any]]:
        system = (
            "You are the Butler of EchoCenter, talking with people in a Feishu chat. Answer briefly, in "
            "words. Use list_agents to see the agents; to run a command call command_agent — a person "
            "approves it first, and its output or the decision comes back to you as the tool result. "
            f"You are talking with {context.requester}."
        )
        if context.summary:
            system += f"\n{context.summary}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        messages += [_wire(turn) for turn in context.history]
        if context.text:
            messages.append({"role": "user", "content": context.text})
        if context.images:
            _with_images(messages, context.images)
        messages += [{"role": "system", "content": note} for note in context.notes]
        return messages

    async def respond(self, context: BrainContext) -> BrainReply:
        try:
            if context.stream is not None:
                text, calls = await self._streamed(context, context.stream)
            else:
                text, calls = await self._whole(context)
        except self._openai_error as exc:
            raise BrainError(f"the language model failed: {type(exc).__name__}") from exc
        by_id: dict[str, ToolCall] = {}
        for parsed in calls:
            if parsed is not None:
                by_id.setdefault(parsed.id, parsed)  # an id given twice is one call (ids pair results)
        unique = tuple(by_id.values())
        if not text and not unique:
            raise BrainError("the language model answered with neither text nor a tool call")
        return BrainReply(inert(text), tool_calls=unique)  # the model repeats what people wrote: no markup

    def _request(self, context: BrainContext) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._model,
            "messages": self._messages(context),
            "tools": tools_for(context),
        }
        if not context.tools_allowed:
            request["tool_choice"] = "none"
        return request

    async def _whole(self, context: BrainContext) -> tuple[str, list[ToolCall | None]]:
        completion = await self._client.chat.completions.create(**self._request(context))
        if not completion.choices:
            raise BrainError("the language model answered nothing")
        message = completion.choices[0].message
        return message.content or "", [
            _tool_call(call.id, getattr(call, "function", None)) for call in message.tool_calls or []
        ]

    async def _streamed(
        self, context: BrainContext, sink: Callable[[str], None]
    ) -> tuple[str, list[ToolCall | None]]:
        """``stream: true``: text deltas are handed on as they come; tool-call deltas are put together by
        their index (the id and name come once, the arguments in pieces)."""
        stream = await self._client.chat.completions.create(**self._request(context), stream=True)
        text = ""
        parts: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                text += delta.content
                sink(text)
            for call in delta.tool_calls or []:
                entry = parts.setdefault(call.index, ["", "", ""])
                entry[0] = entry[0] or (call.id or "")
                if call.function is not None:
                    entry[1] += call.function.name or ""
                    entry[2] += call.function.arguments or ""
        return text, [
            _tool_call(call_id, _Function(name, arguments))
            for call_id, name, arguments in (parts[i] for i in sorted(parts))
        ]


@dataclass(frozen=True, slots=True)
class _Function:
    """A streamed call's function, put together from its deltas."""

    name: str
    arguments: str


def _tool_call(call_id: str | None, function: Any) -> ToolCall | None:
    """A tool call as the loop keeps it; None without an id or a function (its result could not pair)."""
    if function is None or not call_id:
        return None
    try:
        arguments = json.loads(function.arguments or "{}")
    except ValueError:
        arguments = None
    return ToolCall(
        id=str(call_id)[:100],
        name=str(function.name)[:64],
        arguments=arguments if isinstance(arguments, dict) else None,
    )


def _with_images(messages: list[dict[str, Any]], images: list[str]) -> None:
    """The images join the last user message as content parts (its text first)."""
    for message in reversed(messages):
        if message["role"] == "user":
            parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"] or ""}]
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
            message["content"] = parts
            return
