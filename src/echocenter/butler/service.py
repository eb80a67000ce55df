"""The Butler: one conversation per Feishu user and chat (and thread), kept in the database; replies in the
same chat (and thread), streamed into a card when the brain streams; commands go through approvals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter import metrics
from echocenter.agents import service as agents
from echocenter.agents.commands import is_allowed, normalize
from echocenter.agents.hub import AgentHub
from echocenter.approvals.states import ApprovalStatus
from echocenter.approvals.workflow import ApprovalWorkflow
from echocenter.butler.brains import Brain, BrainContext, CommandRequest, Turn
from echocenter.butler.command_check import problem_with, unknown_agent
from echocenter.butler.loop import AgentLoop, Spawn
from echocenter.butler.thinking import think
from echocenter.contracts import InboundMessage
from echocenter.db.models import Approval, Conversation, ConversationTurn, FeishuConnector, LogLevel
from echocenter.db.types import utcnow
from echocenter.feishu.attachments import AttachmentReader, Attachments
from echocenter.feishu.outbound import Outbound
from echocenter.feishu.reactions import Reactions
from echocenter.feishu.streaming import CardStream, CardStreams
from echocenter.feishu.untrusted import inert
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

APOLOGY = "Sorry — I could not think that through just now. Please try again in a moment."


async def _conversation_id(session: AsyncSession, message: InboundMessage) -> int:
    """The conversation of this user in this chat and thread, created on first contact (race-free)."""
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    await session.execute(
        dialect_insert(Conversation)
        .values(
            connector_id=message.connector_id,
            chat_id=message.chat_id,
            open_id=message.open_id,
            thread_id=message.thread_key,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["connector_id", "chat_id", "open_id", "thread_id"])
    )
    conversation_id = await session.scalar(
        select(Conversation.id).where(
            Conversation.connector_id == message.connector_id,
            Conversation.chat_id == message.chat_id,
            Conversation.open_id == message.open_id,
            Conversation.thread_id == message.thread_key,
        )
    )
    assert conversation_id is not None
    return conversation_id


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
        """Keep the user's turn (so it survives a restart); once only, however often the inbox drives it."""
        async with self._sessions() as session:
            conversation_id = await _conversation_id(session, message)
            await _add_turn(
                session, conversation_id, "user", message.text, f"user:{message.message_id}", message
            )
            await session.commit()

    async def answer(self, message: InboundMessage) -> None:
        """Think and reply; the durable inbox marks the message answered when this returns. While it
        thinks, the person's message wears the connector's reaction (a sign of life)."""
        async with self._sessions() as session:
            conversation_id = await _conversation_id(session, message)
            await session.commit()
            prefs = (
                await session.execute(
                    select(FeishuConnector.streaming_replies, FeishuConnector.thinking_reaction).where(
                        FeishuConnector.id == message.connector_id
                    )
                )
            ).first()
        streaming, emoji = (bool(prefs[0]), str(prefs[1] or "")) if prefs else (False, "")
        reaction = None
        if self._reactions is not None and emoji:
            reaction = await self._reactions.add(message.connector_id, message.message_id, emoji)
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
                await self._respond(conversation_id, message, found, streaming=streaming)
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

    async def _history(self, conversation_id: int, before_message_id: str) -> list[Turn]:
        limit = self._settings.butler_history_turns
        if limit == 0:
            return []
        async with self._sessions() as session:
            turns = list(
                await session.scalars(
                    select(ConversationTurn)
                    .where(ConversationTurn.conversation_id == conversation_id)
                    .order_by(ConversationTurn.id.desc())
                    .limit(limit + 1)
                )
            )
        turns.reverse()
        return [
            Turn(t.role, t.content)
            for t in turns
            if t.role in ("user", "assistant") and (t.message_id != before_message_id or t.role != "user")
        ]

    async def _pending(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Approval)
                .where(Approval.status == ApprovalStatus.PENDING.value)
            )
        return int(count or 0)

    async def _respond(
        self, conversation_id: int, message: InboundMessage, found: Attachments, *, streaming: bool
    ) -> None:
        """The rule brain's answer (and its one command); a tool-using brain answers through the loop."""
        started = time.monotonic()
        async with self._locks[conversation_id]:  # one answer at a time per conversation, in order
            async with self._sessions() as session:
                agent_commands = await agents.commands_by_name(session)
            stream: CardStream | None = None
            if streaming and self._streams is not None:
                stream = self._streams.open(message)
            text = "\n\n".join([message.text, *found.texts]).strip() or "(an image)"
            context = BrainContext(
                text=text,
                requester=message.open_id,
                history=await self._history(conversation_id, message.message_id),
                agents_online=await self._hub.online_anywhere(),
                pending_approvals=await self._pending(),
                agent_commands=agent_commands,
                stream=stream.push if stream is not None else None,
                images=found.images,
            )
            reply = await think(self._brain, context, stream=stream, sessions=self._sessions, message=message)
            if reply is None:
                await self._say(message, APOLOGY)
                return
            # The stream ends before anything else is said: a command (or its refusal) follows the card.
            on_card = stream is not None and await stream.finish()
            command = reply.command
            if command is not None and (refusal := await self._refusal(command)):
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
                return
            if command is not None and not is_allowed(command.command, agent_commands.get(command.agent, [])):
                await self._refuse(message, command.agent, command.command, agent_commands[command.agent])
                return
            if found.problems:  # part of it could not be read: say so, then answer the rest
                await self._say(message, " ".join(found.problems), key="unreadable")
            if on_card:
                if stream is not None and stream.overflow:  # longer than a card holds: the rest as text
                    await self._say(message, inert(stream.overflow), key="more")
                await self._remember(conversation_id, reply.text, message, kind="reply")
            elif reply.text:
                await self._say(message, reply.text)
                metrics.ANSWER_LATENCY.observe(time.monotonic() - started)
            if reply.command is not None:
                approval = await self._workflow.request(
                    message=message,
                    requester_name=message.open_id,
                    agent=reply.command.agent,
                    command=reply.command.command,
                    reason=reply.command.reason,
                )
                await self._remember(
                    conversation_id,
                    f"[asked for approval #{approval.id}: {reply.command.command} on {reply.command.agent}]",
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

    async def _say(self, message: InboundMessage, text: str, *, key: str = "reply") -> None:
        """Reply once: the uuid is the message's, so a re-drive finds the first send (Feishu keeps it 1 h).
        A failed send raises (logged as ws_outbound with Feishu's code): the inbox tries again later."""
        await self._outbound.send_text(
            message.connector_id,
            chat_id=message.chat_id,
            text=text,
            reply_to=message.message_id,
            uuid=f"{key}-{message.message_id}",
            in_thread=message.in_thread,
        )
        if key != "reply":
            return
        async with self._sessions() as session:
            conversation_id = await _conversation_id(session, message)
            await session.commit()
        await self._remember(conversation_id, text, message, kind="reply")

    async def _remember(self, conversation_id: int, text: str, message: InboundMessage, *, kind: str) -> None:
        async with self._sessions() as session:
            await _add_turn(
                session, conversation_id, "assistant", text, f"{kind}:{message.message_id}", message
            )
            await session.commit()


async def _add_turn(
    session: AsyncSession, conversation_id: int, role: str, text: str, key: str, message: InboundMessage
) -> None:
    """A conversation turn, added once per key (a re-driven message finds its turn already there)."""
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        dialect_insert(ConversationTurn)
        .values(
            conversation_id=conversation_id,
            role=role,
            content=text,
            message_id=message.message_id if role == "user" else "",
            turn_key=key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["conversation_id", "turn_key"])
    )
