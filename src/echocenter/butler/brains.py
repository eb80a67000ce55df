"""The Butler's brains, behind one interface: a deterministic rule brain (default, offline) and an
OpenAI-compatible LLM brain with a ``command_agent`` tool."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai

from echocenter.feishu.untrusted import inert

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    agent: str
    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class BrainReply:
    text: str = ""
    command: CommandRequest | None = None


@dataclass(frozen=True, slots=True)
class BrainContext:
    text: str
    requester: str
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, content), oldest first
    agents_online: list[str] = field(default_factory=list)
    pending_approvals: int = 0
    agent_commands: dict[str, list[str]] = field(default_factory=dict)  # registered agents; [] = any
    # Optional: a brain that can stream calls this with the full text so far as it grows (never blocks);
    # one that cannot ignores it. Images (data: URLs) go to a vision-capable model with the text.
    stream: Callable[[str], None] | None = None
    images: list[str] = field(default_factory=list)


class BrainError(Exception):
    """The brain could not answer (e.g. the LLM service failed)."""


class Brain(Protocol):
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


class LLMBrain:
    def __init__(self, *, base_url: str, api_token: str, model: str, timeout: float) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_token, timeout=timeout, max_retries=1
        )
        self._model = model

    def _messages(self, context: BrainContext) -> list[dict[str, Any]]:
        system = (
            "You are the Butler of EchoCenter, talking with people in a Feishu chat. Answer briefly. "
            "When someone wants a command run on an agent, call command_agent; a person approves it before "
            f"anything runs. Agents online: {', '.join(context.agents_online) or 'none'}. "
            f"Approvals waiting: {context.pending_approvals}. You are talking with {context.requester}."
        )
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        messages += [{"role": role, "content": content} for role, content in context.history]
        if context.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": context.text}]
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in context.images]
            messages.append({"role": "user", "content": parts})
        else:
            messages.append({"role": "user", "content": context.text})
        return messages

    async def respond(self, context: BrainContext) -> BrainReply:
        try:
            if context.stream is not None:
                text, calls = await self._streamed(context, context.stream)
            else:
                text, calls = await self._whole(context)
        except openai.OpenAIError as exc:
            raise BrainError(f"the language model failed: {type(exc).__name__}") from exc
        return _reply(text, calls)

    async def _whole(self, context: BrainContext) -> tuple[str, list[tuple[str, str]]]:
        completion = await self._client.chat.completions.create(
            model=self._model,
            messages=self._messages(context),  # type: ignore[arg-type]
            tools=[command_tool(context.agent_commands)],  # type: ignore[list-item]
        )
        if not completion.choices:
            raise BrainError("the language model answered nothing")
        message = completion.choices[0].message
        calls = []
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is not None:
                calls.append((function.name or "", function.arguments or ""))
        return message.content or "", calls

    async def _streamed(
        self, context: BrainContext, sink: Callable[[str], None]
    ) -> tuple[str, list[tuple[str, str]]]:
        """``stream: true``: text deltas are handed on as they come; tool-call deltas are put together by
        their index (the name comes once, the arguments in pieces)."""
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=self._messages(context),  # type: ignore[arg-type]
            tools=[command_tool(context.agent_commands)],  # type: ignore[list-item]
            stream=True,
        )
        text = ""
        calls: dict[int, list[str]] = {}
        async for chunk in stream:  # type: ignore[union-attr]
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                text += delta.content
                sink(text)
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, ["", ""])
                if call.function is not None:
                    entry[0] += call.function.name or ""
                    entry[1] += call.function.arguments or ""
        return text, [(name, arguments) for name, arguments in (calls[i] for i in sorted(calls))]


def _reply(text: str, calls: list[tuple[str, str]]) -> BrainReply:
    """The model's answer as a BrainReply: its first command_agent call (if any) and its text."""
    for name, arguments in calls:
        if name != "command_agent":
            continue
        try:
            args = json.loads(arguments or "{}")
            request = CommandRequest(str(args["agent"]), str(args["command"]), str(args.get("reason", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise BrainError("the language model asked for a command with unreadable arguments") from exc
        if not request.agent or not request.command:
            raise BrainError("the language model asked for a command without agent or command")
        return BrainReply(
            inert(text)
            or f"I need a person's approval to run `{inert(request.command)}` on {inert(request.agent)}.",
            request,
        )
    if not text:
        raise BrainError("the language model answered with neither text nor a tool call")
    return BrainReply(inert(text))  # the model repeats what people wrote: no markup from it
