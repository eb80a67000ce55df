"""The Butler: one conversation per Feishu user and chat (and thread), kept in the database; replies in the
same chat (and thread), streamed into a card when the brain streams; commands go through approvals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Coroutine
from typing import Any

from echocenter import metrics
from echocenter.agents.commands import is_allowed, normalize
from echocenter.agents.hub import AgentHub
from echocenter.approvals.workflow import ApprovalWorkflow
from echocenter.butler.brains import Brain, BrainContext, CommandRequest
from echocenter.butler.command_check import problem_with, unknown_agent
from echocenter.butler.loop import AgentLoop, Spawn
from echocenter.butler.snapshot import Snapshot, SnapshotReader
from echocenter.butler.thinking import think
from echocenter.butler.turns import NewTurn, Turns
from echocenter.contracts import InboundMessage
from echocenter.db.models import LogLevel
from echocenter.feishu.attachments import AttachmentReader, Attachments
from echocenter.feishu.outbound import Outbound
from echocenter.feishu.reactions import Reactions
from echocenter.feishu.streaming import CardStream, CardStreams
from echocenter.feishu.untrusted import inert
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

APOLOGY = "Sorry — I could not think that through just now. Please try again in a moment."


class ButlerService:
    def __init__(
        self,
        runtime: Runtime,
        *,
        brain: Brain,
        outbound: Outbound,
        workflow: ApprovalWorkflow,
        hub: AgentHub,
        spawn: Spawn,
        streams: CardStreams | None = None,
        reactions: Reactions | None = None,
        attachments: AttachmentReader | None = None,
    ) -> None:
        self._sessions = runtime.sessions
        self._settings = runtime.settings
        self._brain = brain
        self._outbound = outbound
        self._workflow = workflow
        self._hub = hub
        self._streams = streams
        self._reactions = reactions
        self._attachments = attachments
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        # SQLite means one instance: only this process writes turns, so their memory here is exact.
        single_writer = runtime.engine.dialect.name == "sqlite"
        self._turns = Turns(
            runtime.engine, history=self._settings.butler_history_turns, remember=single_writer
        )
        self._snapshots = SnapshotReader(runtime.sessions, agents_online=hub.online_anywhere)
        # A brain that uses tools answers through the agent loop (results go back to it); the rule brain
        # answers at once and a command's output is posted as it is.
        self._loop = (
            AgentLoop(
                runtime,
                brain=brain,
                outbound=outbound,
                workflow=workflow,
                hub=hub,
                spawn=spawn,
                owner=self._settings.resolved_instance_id,
                streams=streams,
            )
            if brain.uses_tools
            else None
        )

    async def sweep_loops(self) -> None:
        """Take up agent loops that a lost notice or a crash left behind."""
        if self._loop is not None:
            await self._loop.sweep()

    async def handle(self, message: InboundMessage) -> None:
        """Keep the user's turn (so it survives a restart); once only, however often the inbox drives it.
        Turns of messages arriving together share a transaction."""
        await self._turns.add(NewTurn(message, "user", message.text, f"user:{message.message_id}"))

    async def answer(self, message: InboundMessage) -> None:
        """Think and reply; the durable inbox marks the message answered when this returns. While a brain
        that may take a while (one using tools) thinks, the person's message wears the connector's reaction
        (a sign of life); the rule brain answers at once, so it shows none."""
        conversation_id = await self._turns.conversation(message)
        snapshot = await self._snapshots.read(message.connector_id)
        reaction = None
        if self._reactions is not None and snapshot.prefs.reaction and self._loop is not None:
            reaction = await self._reactions.add(
                message.connector_id, message.message_id, snapshot.prefs.reaction
            )
        try:
            found = await self._read_attachments(message)
            if found.problems and not (message.text or found.images or found.texts):
                await self._say(message, " ".join(found.problems))  # nothing left to think about
            elif self._loop is not None:
                if found.problems:  # part of it could not be read: say so, then answer the rest
                    await self._say(message, " ".join(found.problems), key="unreadable")
                async with self._locks[conversation_id]:
                    await self._loop.start(conversation_id, message, attachments=found)
            else:
                await self._respond(conversation_id, message, found, snapshot)
        finally:
            if reaction is not None and self._reactions is not None:
                await self._reactions.remove(message.connector_id, message.message_id, reaction)

    async def _read_attachments(self, message: InboundMessage) -> Attachments:
        if self._attachments is None:
            return Attachments()
        found = await self._attachments.read(message)
        if found.problems:
            await record_now(
                self._sessions,
                connector_id=message.connector_id,
                action=LogAction.ATTACHMENT_REFUSED,
                level=LogLevel.WARN,
                message_id=message.message_id,
                problems=found.problems,
            )
        return found

    async def _respond(
        self, conversation_id: int, message: InboundMessage, found: Attachments, snapshot: Snapshot
    ) -> None:
        """The rule brain's answer (and its one command); a tool-using brain answers through the loop.
        One answer at a time per conversation decides and queues its reply, so replies keep their order;
        waiting for Feishu to take it happens outside, so the conversation's next message need not wait."""
        async with self._locks[conversation_id]:
            delivery = await self._decide(conversation_id, message, found, snapshot)
        if delivery is not None:
            await delivery

    async def _decide(
        self, conversation_id: int, message: InboundMessage, found: Attachments, snapshot: Snapshot
    ) -> Coroutine[Any, Any, None] | None:
        """Think, then say what follows; a plain reply is queued and its delivery handed back to await."""
        started = time.monotonic()
        stream: CardStream | None = None
        if snapshot.prefs.streaming and self._streams is not None:
            stream = self._streams.open(message)
        context = BrainContext(
            text="\n\n".join([message.text, *found.texts]).strip() or "(an image)",
            requester=message.open_id,
            history=await self._turns.history(conversation_id, message.message_id),
            agents_online=snapshot.agents_online,
            pending_approvals=snapshot.pending_approvals,
            agent_commands=snapshot.agent_commands,
            stream=stream.push if stream is not None else None,
            images=found.images,
        )
        reply = await think(self._brain, context, stream=stream, sessions=self._sessions, message=message)
        if reply is None:
            await self._say(message, APOLOGY)
            return None
        # The stream ends before anything else is said: a command (or its refusal) follows the card.
        on_card = stream is not None and await stream.finish()
        if reply.command is not None and not await self._may_ask(message, reply.command, snapshot):
            return None
        if found.problems:  # part of it could not be read: say so, then answer the rest
            await self._say(message, " ".join(found.problems), key="unreadable")
        delivery = None
        if on_card:
            if stream is not None and stream.overflow:  # longer than a card holds: the rest as text
                await self._say(message, inert(stream.overflow), key="more")
            await self._remember(conversation_id, reply.text, message, kind="reply")
        elif reply.text:
            delivery = self._queue_reply(conversation_id, message, reply.text, started)
        if reply.command is None:
            return delivery
        if delivery is not None:  # the reply goes out before the approval card is asked for
            await delivery
        await self._ask_approval(conversation_id, message, reply.command)
        return None

    async def _may_ask(self, message: InboundMessage, command: CommandRequest, snapshot: Snapshot) -> bool:
        """Whether a card may be sent for this command; if not, the person is told why (and it is logged)."""
        if refusal := await self._refusal(command):
            await record_now(
                self._sessions,
                connector_id=message.connector_id,
                action=LogAction.COMMAND_REFUSED,
                level=LogLevel.WARN,
                reason=refusal,
                agent=command.agent[:64],
                message_id=message.message_id,
            )
            await self._say(message, f"I cannot ask for that: {refusal}")
            return False
        allowed = snapshot.agent_commands.get(command.agent, [])
        if not is_allowed(command.command, allowed):
            await self._refuse(message, command.agent, command.command, allowed)
            return False
        return True

    async def _ask_approval(
        self, conversation_id: int, message: InboundMessage, command: CommandRequest
    ) -> None:
        approval = await self._workflow.request(
            message=message,
            requester_name=message.open_id,
            agent=command.agent,
            command=command.command,
            reason=command.reason,
        )
        await self._remember(
            conversation_id,
            f"[asked for approval #{approval.id}: {command.command} on {command.agent}]",
            message,
            kind="approval",
        )

    async def _refuse(self, message: InboundMessage, agent: str, command: str, allowed: list[str]) -> None:
        """No card for a command the agent does not offer: say why, and log it."""
        await record_now(
            self._sessions,
            connector_id=message.connector_id,
            action=LogAction.APPROVAL_REFUSED,
            level=LogLevel.WARN,
            reason="command_not_allowed",
            agent=agent,
            command=normalize(command)[:500],
            requested_by=message.open_id,
            message_id=message.message_id,
        )
        await self._say(
            message,
            f"I cannot ask for `{normalize(command)[:200]}` on {agent}: it is not one of the commands that "
            f"agent runs. It runs: " + "; ".join(f"`{c}`" for c in allowed),
        )

    async def _refusal(self, command: CommandRequest) -> str | None:
        """Why no card may be sent for this command (told to the person), or None."""
        problem = problem_with(command.agent, command.command)
        if problem is None:
            async with self._sessions() as session:
                if await unknown_agent(session, command.agent):
                    problem = f"there is no registered agent named {command.agent}."
        return problem

    def _queue_reply(
        self, conversation_id: int, message: InboundMessage, text: str, started: float
    ) -> Coroutine[Any, Any, None]:
        """The reply takes its place in the chat's order now (and in the conversation's memory, so the next
        message's history has it); the coroutine back waits until Feishu took it, then stores the turn."""
        sent = self._queue(message, text, "reply")
        turn = NewTurn(message, "assistant", text, f"reply:{message.message_id}")
        self._turns.remember(conversation_id, turn)
        return self._delivered(conversation_id, sent, turn, started)

    async def _delivered(
        self, conversation_id: int, sent: Awaitable[list[str]], turn: NewTurn, started: float
    ) -> None:
        try:
            await sent
        except BaseException:
            self._turns.forget(conversation_id)  # its memory holds a reply that was not sent
            raise
        metrics.ANSWER_LATENCY.observe(time.monotonic() - started)
        await self._turns.add(turn)

    def _queue(self, message: InboundMessage, text: str, key: str) -> Coroutine[Any, Any, list[str]]:
        return self._outbound.queue_text(
            message.connector_id,
            chat_id=message.chat_id,
            text=text,
            reply_to=message.message_id,
            uuid=f"{key}-{message.message_id}",
            in_thread=message.in_thread,
        )

    async def _say(self, message: InboundMessage, text: str, *, key: str = "reply") -> None:
        """Reply once: the uuid is the message's, so a re-drive finds the first send (Feishu keeps it 1 h).
        A failed send raises (logged as ws_outbound with Feishu's code): the inbox tries again later."""
        await self._queue(message, text, key)
        if key == "reply":
            await self._turns.add(NewTurn(message, "assistant", text, f"reply:{message.message_id}"))

    async def _remember(self, conversation_id: int, text: str, message: InboundMessage, *, kind: str) -> None:
        await self._turns.add(NewTurn(message, "assistant", text, f"{kind}:{message.message_id}"))
