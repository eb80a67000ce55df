"""The agent loop: a person's request is finished by the model, step by step, with a person approving every
command in between.

    model → tool calls ─┬─ list_agents / approval_status: answered at once
                        └─ command_agent: an approval card each ─ decided ─ run ─┐
    model ◀── every call's result as a ``role: tool`` message (output capped) ◀──┘
    model → words: the reply in the chat, and the request is done

Durable like the inbox: the request is a ``butler_loops`` row (RUNNING while an instance holds its lease,
WAITING on approvals, DONE), its tool calls are rows, and the conversation (tool calls and results too) is in
``conversation_turns``. An approval that reaches a final state wakes the loop through the workflow's
``tell_when_finished`` hook on whichever instance wrote it; a sweep on every instance picks up what a lost
hook or a crash left behind. Taking a loop is one conditional UPDATE, so exactly one instance continues it.
Every reply carries a deterministic Feishu ``uuid`` and every turn a unique key, so a second attempt is
harmless.

Bounds: at most ``butler_max_steps`` tool calls per request, a time budget per request, and results fed back
tail first within ``butler_tool_output_chars``. When a bound is reached the model is told so and asked to
answer without tools; a request always ends with words in the chat (an answer or an apology).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.agents import service as agents
from echocenter.agents.commands import is_allowed
from echocenter.agents.hub import AgentHub
from echocenter.approvals.states import FINAL, ApprovalStatus
from echocenter.approvals.workflow import ApprovalWorkflow
from echocenter.butler.brains import Brain, BrainContext, BrainReply, ToolCall, Turn
from echocenter.butler.command_check import problem_with, unknown_agent
from echocenter.butler.memory import fit
from echocenter.butler.thinking import think
from echocenter.contracts import InboundMessage
from echocenter.db.models import (
    Approval,
    ButlerLoop,
    ButlerToolCall,
    ConversationTurn,
    FeishuConnector,
    LogLevel,
)
from echocenter.db.types import utcnow
from echocenter.feishu.attachments import Attachments
from echocenter.feishu.outbound import Outbound
from echocenter.feishu.streaming import CardStream, CardStreams
from echocenter.feishu.untrusted import inert
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

Spawn = Callable[[str, Awaitable[None]], None]
APOLOGY = (
    "Sorry — I could not reach my language model just now, so I cannot finish this. "
    "Please try again in a moment."
)
HISTORY_ROWS = 200  # the most turns read for one model call, before the token budget trims them
FINAL_VALUES = tuple(s.value for s in FINAL)


class LoopStatus(StrEnum):
    RUNNING = "RUNNING"  # an instance holds the lease and is working on it
    WAITING = "WAITING"  # on approvals
    DONE = "DONE"


def cap_output(text: str, limit: int) -> str:
    """The tail of ``text`` within ``limit`` characters (the end of an output says most), with a note of
    what was cut."""
    if len(text) <= limit:
        return text
    return f"[first {len(text) - limit} of {len(text)} characters cut]\n" + text[-limit:]


def outcome_for_model(approval: Approval, limit: int) -> str:
    """What a finished approval tells the model, as the tool result of the call that asked for it."""
    status = approval.status
    if status == ApprovalStatus.REJECTED.value:
        reason = approval.decision_reason or "no reason given"
        return f"rejected by {approval.decided_by}: {reason}. The command did not run."
    if status == ApprovalStatus.EXPIRED.value:
        return "expired: nobody decided in time. The command did not run."
    state = "exit status 0 (succeeded)" if status == ApprovalStatus.EXECUTED.value else "failed"
    output = cap_output(approval.output or "", limit) or "(no output)"
    return f"approval #{approval.id} approved by {approval.decided_by}; ran: {state}\noutput:\n{output}"


def reply_uuid(message_id: str, model_turn: int) -> str:
    """One Feishu uuid per model turn of one request (the part suffix keeps it within 50 characters)."""
    return "loop-" + hashlib.sha256(f"{message_id}:{model_turn}".encode()).hexdigest()[:32]


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _turn(row: ConversationTurn) -> Turn:
    calls = tuple(
        ToolCall(id=str(c.get("id", "")), name=str(c.get("name", "")), arguments=c.get("arguments"))
        for c in row.tool_calls or []
    )
    return Turn(role=row.role, content=row.content, tool_calls=calls, tool_call_id=row.tool_call_id or "")


def _as_of_request(rows: list[ConversationTurn], loop: ButlerLoop) -> list[ConversationTurn]:
    """The conversation as this request sees it: everything up to its message, then only its own turns
    (a message the person wrote meanwhile is another request, with a loop of its own)."""
    source = next((r.id for r in rows if r.turn_key == f"user:{loop.source_message_id}"), None)
    if source is None:
        return rows
    own = {"calls", "tool", "answer"}

    def belongs(row: ConversationTurn) -> bool:
        kind, _, rest = (row.turn_key or "").partition(":")
        return kind in own and rest.split(":")[0] == str(loop.id)

    return [r for r in rows if r.id <= source or belongs(r)]


class AgentLoop:
    def __init__(
        self,
        runtime: Runtime,
        *,
        brain: Brain,
        outbound: Outbound,
        workflow: ApprovalWorkflow,
        hub: AgentHub,
        spawn: Spawn,
        owner: str,
        streams: CardStreams | None = None,
    ) -> None:
        self._sessions = runtime.sessions
        self._settings = runtime.settings
        self._brain = brain
        self._outbound = outbound
        self._workflow = workflow
        self._hub = hub
        self._spawn = spawn
        self._owner = owner[:64]
        self._streams = streams
        workflow.tell_when_finished(self.approval_finished)

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.butler_loop_lease_seconds)

    # --- taking a loop ------------------------------------------------------------------------------
    async def start(
        self, conversation_id: int, message: InboundMessage, *, attachments: Attachments | None = None
    ) -> None:
        """The request behind a new message: created once (a re-driven message finds it) and driven here.
        ``attachments`` (images, files' text) go to the model with the message on the first model call."""
        now = utcnow()
        async with self._sessions() as session:
            created = await session.execute(
                _insert(session)(ButlerLoop)
                .values(
                    conversation_id=conversation_id,
                    connector_id=message.connector_id,
                    source_message_id=message.message_id,
                    message=asdict(message),
                    status=LoopStatus.RUNNING.value,
                    steps=0,
                    model_turns=0,
                    deadline=now + timedelta(seconds=self._settings.butler_request_budget_seconds),
                    lease_owner=self._owner,
                    lease_until=now + self._lease,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["connector_id", "source_message_id"])
            )
            loop_id = await session.scalar(
                select(ButlerLoop.id).where(
                    ButlerLoop.connector_id == message.connector_id,
                    ButlerLoop.source_message_id == message.message_id,
                )
            )
            await session.commit()
        assert loop_id is not None
        if getattr(created, "rowcount", 0) or await self._claim(loop_id):
            await self._drive(loop_id, attachments)

    async def _claim(self, loop_id: int) -> bool:
        """Take a loop that waits (its approvals may have finished) or whose holder's lease ran out."""
        now = utcnow()
        async with self._sessions() as session:
            result = await session.execute(
                update(ButlerLoop)
                .where(
                    ButlerLoop.id == loop_id,
                    or_(
                        ButlerLoop.status == LoopStatus.WAITING.value,
                        and_(ButlerLoop.status == LoopStatus.RUNNING.value, ButlerLoop.lease_until < now),
                    ),
                )
                .values(
                    status=LoopStatus.RUNNING.value, lease_owner=self._owner, lease_until=now + self._lease
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return bool(getattr(result, "rowcount", 0))

    async def _held(self, loop_id: int, **values: Any) -> bool:
        """Change a loop this instance holds (RUNNING under its lease); False when it is no longer ours."""
        async with self._sessions() as session:
            result = await session.execute(
                update(ButlerLoop)
                .where(
                    ButlerLoop.id == loop_id,
                    ButlerLoop.status == LoopStatus.RUNNING.value,
                    ButlerLoop.lease_owner == self._owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return bool(getattr(result, "rowcount", 0))

    async def _move(self, loop_id: int, status: LoopStatus, **values: Any) -> bool:
        """Leave RUNNING, letting the lease go."""
        if status is LoopStatus.DONE:
            values["finished_at"] = utcnow()
        return await self._held(loop_id, status=status.value, lease_owner=None, lease_until=None, **values)

    async def _renew(self, loop_id: int) -> bool:
        """Extend the lease before each step (a step is at most a model call and its cards)."""
        return await self._held(loop_id, lease_until=utcnow() + self._lease)

    async def approval_finished(self, approval: Approval) -> bool:
        """The workflow's hook: an approval of a loop that is not done wakes it (in the background, so a card
        click is never held up by a model call). False: not ours, the chat gets the raw outcome."""
        async with self._sessions() as session:
            loop_id = await session.scalar(
                select(ButlerToolCall.loop_id)
                .join(ButlerLoop, ButlerLoop.id == ButlerToolCall.loop_id)
                .where(ButlerToolCall.approval_id == approval.id, ButlerLoop.status != LoopStatus.DONE.value)
            )
        if loop_id is None:
            return False
        self._spawn(f"butler-loop-{loop_id}", self.resume(loop_id))
        return True

    async def resume(self, loop_id: int) -> None:
        if await self._claim(loop_id):
            await self._drive(loop_id)

    async def sweep(self) -> int:
        """Take up loops a lost hook or a crash left behind: waiting ones whose approvals have a final
        outcome, running ones whose lease ran out. Returns how many were taken."""
        now = utcnow()
        open_call_done = exists().where(
            ButlerToolCall.loop_id == ButlerLoop.id,
            ButlerToolCall.result.is_(None),
            Approval.id == ButlerToolCall.approval_id,
            Approval.status.in_(FINAL_VALUES),
        )
        async with self._sessions() as session:
            ids = list(
                await session.scalars(
                    select(ButlerLoop.id)
                    .where(
                        or_(
                            and_(
                                ButlerLoop.status == LoopStatus.WAITING.value,
                                or_(open_call_done, ButlerLoop.deadline < now),
                            ),
                            and_(ButlerLoop.status == LoopStatus.RUNNING.value, ButlerLoop.lease_until < now),
                        )
                    )
                    .order_by(ButlerLoop.id)
                    .limit(50)
                )
            )
        taken = 0
        for loop_id in ids:
            if await self._claim(loop_id):
                taken += 1
                self._spawn(f"butler-loop-{loop_id}", self._drive(loop_id))
        return taken

    # --- driving ------------------------------------------------------------------------------------
    async def _get(self, loop_id: int) -> ButlerLoop | None:
        async with self._sessions() as session:
            return await session.get(ButlerLoop, loop_id, populate_existing=True)

    async def _drive(self, loop_id: int, attachments: Attachments | None = None) -> None:
        """Work while this instance holds the loop: settle calls, ask the model, until it waits or ends."""
        while True:
            if not await self._renew(loop_id):
                return  # no longer ours (another instance took it up after our lease ran out)
            loop = await self._get(loop_id)
            if loop is None:
                return
            message = InboundMessage(**loop.message)
            waiting = await self._settle(loop, message)  # a failure leaves it to the sweep, lease run out
            if waiting:
                if await self._move(loop_id, LoopStatus.WAITING) and await self._ready(loop_id):
                    await self.resume(loop_id)  # an approval finished while this one was moving to wait
                return
            if not await self._think(loop, message, attachments):
                return
            attachments = None  # handed over with the first model call

    async def _ready(self, loop_id: int) -> bool:
        """No open call waits for a person any more."""
        async with self._sessions() as session:
            still = await session.scalar(
                select(func.count())
                .select_from(ButlerToolCall)
                .join(Approval, Approval.id == ButlerToolCall.approval_id)
                .where(
                    ButlerToolCall.loop_id == loop_id,
                    ButlerToolCall.result.is_(None),
                    Approval.status.not_in(FINAL_VALUES),
                )
            )
        return not still

    async def _settle(self, loop: ButlerLoop, message: InboundMessage) -> int:
        """Carry out the open tool calls; the number still waiting on a person."""
        async with self._sessions() as session:
            calls = list(
                await session.scalars(
                    select(ButlerToolCall)
                    .where(ButlerToolCall.loop_id == loop.id, ButlerToolCall.result.is_(None))
                    .order_by(ButlerToolCall.id)
                )
            )
        waiting = 0
        over_time = utcnow() >= loop.deadline
        for call in calls:
            result = await self._result(loop, call, message, over_time=over_time)
            if result is None:
                waiting += 1
            else:
                await self._record(loop, call, result)
        return waiting

    async def _result(
        self, loop: ButlerLoop, call: ButlerToolCall, message: InboundMessage, *, over_time: bool
    ) -> str | None:
        """The tool result of one call, or None while its approval waits for a person."""
        args = call.arguments
        if call.name == "list_agents":
            return await self._list_agents()
        if call.name == "approval_status":
            return await self._approval_status(args.get("approval_id"), message)
        if call.name != "command_agent":
            return f"error: there is no tool named {call.name}."
        if call.approval_id is None:
            refusal = await self._refusal(args)
            if refusal:
                await record_now(  # no card: the model is told why and tells the person
                    self._sessions,
                    connector_id=message.connector_id,
                    action=LogAction.APPROVAL_REFUSED,
                    level=LogLevel.WARN,
                    reason=refusal[:300],
                    agent=str(args.get("agent", ""))[:64],
                    requested_by=message.open_id,
                    message_id=message.message_id,
                )
                return f"refused, no approval was asked: {refusal}"
            approval = await self._workflow.request(
                message=message,
                requester_name=message.open_id,
                agent=str(args["agent"]),
                command=str(args["command"]),
                reason=str(args.get("reason", "")),
                request_id=f"loop-{loop.id}-call-{call.id}",
            )
            async with self._sessions() as session:
                await session.execute(
                    update(ButlerToolCall).where(ButlerToolCall.id == call.id).values(approval_id=approval.id)
                )
                await session.commit()
            call.approval_id = approval.id
        async with self._sessions() as session:
            stored = await session.get(Approval, call.approval_id, populate_existing=True)
        if stored is None:
            return "error: the approval request was deleted."
        return self._outcome(stored, over_time=over_time)

    def _outcome(self, approval: Approval, *, over_time: bool) -> str | None:
        if approval.status in FINAL_VALUES:
            return outcome_for_model(approval, self._settings.butler_tool_output_chars)
        if over_time:
            return (
                f"approval #{approval.id} is still {approval.status.lower()}: the time budget for this "
                "request ran out before it finished."
            )
        return None

    async def _refusal(self, args: dict[str, Any]) -> str | None:
        agent, command = args.get("agent"), args.get("command")
        if not isinstance(agent, str) or not isinstance(command, str) or not agent or not command:
            return "command_agent needs an agent and a command."
        problem = problem_with(agent, command)
        if problem:
            return problem
        async with self._sessions() as session:
            if await unknown_agent(session, agent):
                return f"there is no registered agent named {agent}."
            allowed = (await agents.commands_by_name(session)).get(agent, [])
        if not is_allowed(command, allowed):
            return f"{agent} does not run that command; it runs: " + "; ".join(allowed)
        return None

    async def _list_agents(self) -> str:
        async with self._sessions() as session:
            commands = await agents.commands_by_name(session)
        online = set(await self._hub.online_anywhere())
        return json.dumps(
            [
                {"name": name, "online": name in online, "commands": runs or "any command"}
                for name, runs in sorted(commands.items())
            ]
        )

    async def _approval_status(self, approval_id: Any, message: InboundMessage) -> str:
        """One approval of this chat (another chat's commands are not this chat's business), or the count
        of those waiting (as the rule brain's ``status`` tells anyone)."""
        async with self._sessions() as session:
            if type(approval_id) is int:
                approval = await session.get(Approval, approval_id)
                if (
                    approval is None
                    or approval.connector_id != message.connector_id
                    or approval.chat_id != message.chat_id
                ):
                    return f"there is no approval #{approval_id} in this chat."
                return json.dumps(
                    {
                        "approval_id": approval.id,
                        "status": approval.status,
                        "agent": approval.agent_name,
                        "command": approval.command,
                        "decided_by": approval.decided_by,
                    }
                )
            waiting = await session.scalar(
                select(func.count())
                .select_from(Approval)
                .where(Approval.status == ApprovalStatus.PENDING.value)
            )
        return json.dumps({"approvals_waiting": int(waiting or 0)})

    async def _record(self, loop: ButlerLoop, call: ButlerToolCall, result: str) -> None:
        """The call's result, and the tool turn the model will read, in one transaction (once)."""
        async with self._sessions() as session:
            done = await session.execute(
                update(ButlerToolCall)
                .where(ButlerToolCall.id == call.id, ButlerToolCall.result.is_(None))
                .values(result=result)
                .execution_options(synchronize_session=False)
            )
            if getattr(done, "rowcount", 0):
                await session.execute(
                    _insert(session)(ConversationTurn)
                    .values(
                        conversation_id=loop.conversation_id,
                        role="tool",
                        content=result,
                        message_id="",
                        turn_key=f"tool:{loop.id}:{call.id}",
                        tool_call_id=call.call_id,
                        created_at=utcnow(),
                    )
                    .on_conflict_do_nothing(index_elements=["conversation_id", "turn_key"])
                )
            await session.commit()

    # --- the model ----------------------------------------------------------------------------------
    async def _context(
        self, loop: ButlerLoop, message: InboundMessage, attachments: Attachments | None
    ) -> BrainContext:
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(ConversationTurn)
                    .where(ConversationTurn.conversation_id == loop.conversation_id)
                    .order_by(ConversationTurn.id.desc())
                    .limit(HISTORY_ROWS)
                )
            )
            agent_commands = await agents.commands_by_name(session)
        rows.reverse()
        rows = _as_of_request(rows, loop)
        images: list[str] = []
        if attachments is not None and loop.model_turns == 0:
            images = attachments.images
            rows = [_with_files(r, loop, message, attachments) for r in rows]
        history, summary = fit([_turn(r) for r in rows], budget_tokens=self._settings.butler_history_tokens)
        notes: list[str] = []
        max_steps = self._settings.butler_max_steps
        if loop.steps >= max_steps:
            notes.append(
                f"You have used all {max_steps} tool steps allowed for one request. Do not call tools: "
                "answer now with what you have, and say that the step limit was reached."
            )
        if utcnow() >= loop.deadline:
            notes.append(
                "The time budget for this request is used up. Do not call tools: answer now with what you "
                "have, and say that the time ran out."
            )
        return BrainContext(
            text="",
            requester=message.open_id,
            history=history,
            agent_commands=agent_commands,
            summary=summary,
            notes=tuple(notes),
            tools_allowed=not notes,
            images=images,
        )

    async def _think(
        self, loop: ButlerLoop, message: InboundMessage, attachments: Attachments | None = None
    ) -> bool:
        """One model turn. True: it asked for tools (drive on); False: the request is answered."""
        turn = loop.model_turns + 1
        stream = await self._stream(message, turn)
        context = await self._context(loop, message, attachments)
        if stream is not None:
            context = replace(context, stream=stream.push)
        reply = await think(
            self._brain, context, stream=stream, sessions=self._sessions, message=message, step=turn
        )
        if reply is None:
            await self._give_up(loop, message, APOLOGY)
            return False
        # The stream ends before anything else is said: the approval cards of its calls follow the card.
        on_card = stream is not None and await stream.finish()
        if reply.tool_calls and context.tools_allowed:
            await self._add_calls(loop, turn, reply)
            await self._say_turn(message, turn, reply.text, stream if on_card else None)
            return True
        text = reply.text
        if not text:  # it asked for tools past a bound and said nothing: say why it stops
            text = "I stopped here: " + (context.notes[0].split(". ")[0] if context.notes else "no answer")
            on_card = False
        await self._say_turn(message, turn, text, stream if on_card else None)
        await self._add_turn(loop, f"answer:{loop.id}", text, None)
        await self._move(loop.id, LoopStatus.DONE, model_turns=turn)
        return False

    async def _stream(self, message: InboundMessage, turn: int) -> CardStream | None:
        """A card for this model turn's words when the connector streams replies (``streaming_replies``)."""
        if self._streams is None:
            return None
        async with self._sessions() as session:
            streaming = await session.scalar(
                select(FeishuConnector.streaming_replies).where(FeishuConnector.id == message.connector_id)
            )
        return self._streams.open(message, turn=turn) if streaming else None

    async def _say_turn(self, message: InboundMessage, turn: int, text: str, card: CardStream | None) -> None:
        """A model turn's words: on its card already (only what did not fit follows as text), or as text."""
        if card is not None:
            text = card.overflow
        if text:
            await self._say(message, turn, text)

    async def _add_calls(self, loop: ButlerLoop, turn: int, reply: BrainReply) -> None:
        """The model's turn and its calls, in one transaction; calls past the step bound are answered at once
        with that bound (the model is told on its next turn)."""
        async with self._sessions() as session:
            if not await self._claim_turn(session, loop, turn, len(reply.tool_calls)):
                await session.rollback()
                return  # another instance took the loop over meanwhile
            await session.execute(
                _insert(session)(ConversationTurn)
                .values(
                    conversation_id=loop.conversation_id,
                    role="assistant",
                    content=reply.text,
                    message_id="",
                    turn_key=f"calls:{loop.id}:{turn}",
                    tool_calls=[asdict(c) for c in reply.tool_calls],
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["conversation_id", "turn_key"])
            )
            session.add_all(_call_rows(loop, turn, reply, self._settings.butler_max_steps))
            await session.commit()
        await self._add_decided_turns(loop, turn)

    async def _claim_turn(self, session: AsyncSession, loop: ButlerLoop, turn: int, calls: int) -> bool:
        """Move the loop to ``turn`` if this instance still holds it at the turn it read."""
        claimed = await session.execute(
            update(ButlerLoop)
            .where(
                ButlerLoop.id == loop.id,
                ButlerLoop.lease_owner == self._owner,
                ButlerLoop.model_turns == loop.model_turns,
            )
            .values(model_turns=turn, steps=loop.steps + calls)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(claimed, "rowcount", 0))

    async def _add_decided_turns(self, loop: ButlerLoop, turn: int) -> None:
        """Results decided at once (bound, bad arguments) become tool turns too."""
        async with self._sessions() as session:
            decided = list(
                await session.scalars(
                    select(ButlerToolCall).where(
                        ButlerToolCall.loop_id == loop.id,
                        ButlerToolCall.model_turn == turn,
                        ButlerToolCall.result.is_not(None),
                    )
                )
            )
        for row in decided:
            await self._add_turn(loop, f"tool:{loop.id}:{row.id}", row.result or "", row.call_id)

    async def _add_turn(self, loop: ButlerLoop, key: str, text: str, tool_call_id: str | None) -> None:
        async with self._sessions() as session:
            await session.execute(
                _insert(session)(ConversationTurn)
                .values(
                    conversation_id=loop.conversation_id,
                    role="tool" if tool_call_id else "assistant",
                    content=text,
                    message_id="",
                    turn_key=key,
                    tool_call_id=tool_call_id,
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["conversation_id", "turn_key"])
            )
            await session.commit()

    async def _say(self, message: InboundMessage, model_turn: int, text: str) -> None:
        await self._outbound.send_text(
            message.connector_id,
            chat_id=message.chat_id,
            text=inert(text),
            reply_to=message.message_id,
            uuid=reply_uuid(message.message_id, model_turn),
            in_thread=message.in_thread,
        )

    async def _give_up(self, loop: ButlerLoop, message: InboundMessage, text: str) -> None:
        """End the request with an explanation in the chat: never a loop left silent."""
        try:
            await self._say(message, loop.model_turns + 1, text)
        except Exception:
            log.warning("butler_loop_apology_not_sent loop_id=%s", loop.id)
            return  # left RUNNING: when the lease runs out the sweep tries again
        await self._add_turn(loop, f"answer:{loop.id}", text, None)
        await self._move(loop.id, LoopStatus.DONE)


def _with_files(
    row: ConversationTurn, loop: ButlerLoop, message: InboundMessage, attachments: Attachments
) -> ConversationTurn:
    """The request's own message as the model reads it on its first call: with its files' text (an image
    alone gets a placeholder, the image itself goes alongside)."""
    if row.turn_key != f"user:{loop.source_message_id}" or not (attachments.texts or attachments.images):
        return row
    text = "\n\n".join([message.text, *attachments.texts]).strip() or "(an image)"
    return ConversationTurn(
        id=row.id, role=row.role, content=text, turn_key=row.turn_key, tool_call_id=row.tool_call_id
    )


def _call_rows(loop: ButlerLoop, turn: int, reply: BrainReply, max_steps: int) -> list[ButlerToolCall]:
    """A row per call; past the step bound, or without a JSON object of arguments, it carries its answer."""
    rows = []
    for index, call in enumerate(reply.tool_calls):
        if loop.steps + index >= max_steps:
            result: str | None = f"not run: the limit of {max_steps} tool steps per request is reached."
        elif call.arguments is None:
            result = "error: the arguments were not a JSON object."
        else:
            result = None
        rows.append(
            ButlerToolCall(
                loop_id=loop.id,
                model_turn=turn,
                call_id=call.id,
                name=call.name,
                arguments=call.arguments or {},
                result=result,
                created_at=utcnow(),
            )
        )
    return rows
