"""The Butler's brains, behind one interface: a deterministic rule brain (default, offline) and an
OpenAI-compatible LLM brain with a ``command_agent`` tool."""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass, field
from typing import Any, Protocol

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
        import openai  # here, not at the top: about 14 MB of RSS, only when an LLM is configured (issue 15)

        self._openai_error: type[Exception] = openai.OpenAIError
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
        messages.append({"role": "user", "content": context.text})
        return messages

    async def respond(self, context: BrainContext) -> BrainReply:
        try:
            completion = await self._client.chat.completions.create(
                model=self._model,
                messages=self._messages(context),  # type: ignore[arg-type]
                tools=[command_tool(context.agent_commands)],  # type: ignore[list-item]
            )
        except self._openai_error as exc:
            raise BrainError(f"the language model failed: {type(exc).__name__}") from exc
        if not completion.choices:
            raise BrainError("the language model answered nothing")
        message = completion.choices[0].message
        text = message.content or ""
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is None or function.name != "command_agent":
                continue
            try:
                args = json.loads(function.arguments or "{}")
                request = CommandRequest(
                    str(args["agent"]), str(args["command"]), str(args.get("reason", ""))
                )
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
