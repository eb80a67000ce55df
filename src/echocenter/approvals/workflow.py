"""From "the Butler wants to run a command" to "it ran, once, and everyone can see who decided":
request → card → decision (card click or admin API) → execution on the agent → result in chat and on the card.
Expiry and restart recovery live here too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from echocenter.agents.hub import AgentHub, AgentOffline, CommandResult
from echocenter.approvals import copies, store, timeline, votes
from echocenter.approvals.cards import NOTE_FIELD, raw
from echocenter.approvals.delivery import CardDelivery
from echocenter.approvals.policy import refusal
from echocenter.approvals.reminders import ReminderSweep
from echocenter.approvals.states import ApprovalStatus
from echocenter.approvals.timeline import EventKind
from echocenter.cluster.bus import EventBus, InProcessBus
from echocenter.cluster.presence import online_agents
from echocenter.contracts import CardActionEvent, InboundMessage
from echocenter.db.models import Approval, FeishuConnector, LogLevel
from echocenter.db.types import utcnow
from echocenter.feishu.contacts import ContactDirectory
from echocenter.feishu.outbound import Outbound, OutboundError
from echocenter.feishu.untrusted import inert
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

Spawn = Callable[[str, Awaitable[None]], None]
# Told when an approval reaches a final state on this instance (EXECUTED, FAILED, REJECTED, EXPIRED); True
# means it takes over telling the chat (the Butler's agent loop), so the raw output is not posted.
OnFinished = Callable[[Approval], Awaitable[bool]]
RECOVERY_MARGIN_SECONDS = 30
MAX_ID = 2**31 - 1


def _toast(kind: str, content: str) -> dict[str, Any]:
    return {"type": kind, "content": content}


class ApprovalWorkflow:
    def __init__(
        self,
        runtime: Runtime,
        *,
        outbound: Outbound,
        hub: AgentHub,
        spawn: Spawn,
        bus: EventBus | None = None,
        contacts: ContactDirectory | None = None,
    ) -> None:
        self._runtime = runtime
        self._bus = bus or InProcessBus(runtime.settings.resolved_instance_id)
        self._bus.subscribe("directive", self._on_directive)
        self._bus.on_resync(self.run_missed_directives)
        self._sessions = runtime.sessions
        self._settings = runtime.settings
        self._outbound = outbound
        self._hub = hub
        self._spawn = spawn
        self._contacts = contacts
        self._cards = CardDelivery(runtime.sessions, outbound)
        self._reminders = ReminderSweep(runtime.sessions, runtime.settings, self._cards)
        self._on_finished: OnFinished | None = None

    async def name_of(self, connector_id: int | None, open_id: str) -> str:
        if self._contacts is None:
            return open_id
        return await self._contacts.name(connector_id, open_id)

    async def _event(
        self, approval: Approval, kind: str, actor: str = "", name: str = "", **detail: Any
    ) -> None:
        await timeline.append(
            self._sessions, approval_id=approval.id, kind=kind, actor=actor, actor_name=name, **detail
        )

    def tell_when_finished(self, listener: OnFinished) -> None:
        """The layer above (the agent loop) hands its callable down here, once, as it is built: told of each
        approval this instance moves to a final state; True means it answers the chat itself."""
        if self._on_finished is not None:
            raise RuntimeError("an approval outcome has one listener")
        self._on_finished = listener

    async def _finished(self, approval: Approval) -> bool:
        """Tell the hook; a failing hook is logged and the chat still gets the raw outcome."""
        if self._on_finished is None:
            return False
        try:
            return await self._on_finished(approval)
        except Exception:
            log.exception("approval_on_finished_failed approval_id=%s", approval.id)
            return False

    async def _log(
        self, approval: Approval, action: LogAction, level: LogLevel = LogLevel.INFO, **detail: Any
    ) -> None:
        await record_now(
            self._sessions,
            connector_id=approval.connector_id,
            action=action,
            level=level,
            approval_id=approval.id,
            agent=approval.agent_name,
            command=approval.command,
            **detail,
        )

    async def _get(self, approval_id: int) -> Approval:
        async with self._sessions() as session:
            return await store.get(session, approval_id)

    # --- request ------------------------------------------------------------------------------------
    async def request(
        self,
        *,
        message: InboundMessage,
        requester_name: str,
        agent: str,
        command: str,
        reason: str,
        request_id: str | None = None,
    ) -> Approval:
        """Write the PENDING approval first (durable), then put the card in front of people. A re-driven
        message (durable inbox) finds its approval already there and does not ask twice; so does a given
        ``request_id`` (one message may ask for several commands, e.g. in the agent loop)."""
        if requester_name == message.open_id:
            requester_name = await self.name_of(message.connector_id, message.open_id)
        approval, connector, created = await self._find_or_create(
            message,
            requester_name=requester_name,
            agent=agent,
            command=command,
            reason=reason,
            request_id=request_id,
        )
        if approval.card_message_id:
            return approval
        if created:
            await self._event(
                approval,
                EventKind.REQUESTED,
                message.open_id,
                requester_name,
                agent=agent,
                command=command,
                reason=reason,
                chat_id=message.chat_id,
                approvals_required=approval.approvals_required,
            )
        await self._send_first_card(approval, connector, message)
        return approval

    async def _find_or_create(
        self,
        message: InboundMessage,
        *,
        requester_name: str,
        agent: str,
        command: str,
        reason: str,
        request_id: str | None,
    ) -> tuple[Approval, FeishuConnector | None, bool]:
        """The approval this message (or ``request_id``) asked for, written PENDING if it is new; its
        connector; and whether it was created now."""
        found = (
            Approval.request_id == request_id
            if request_id
            else (Approval.connector_id == message.connector_id)
            & (Approval.source_message_id == message.message_id)
        )
        async with self._sessions() as session:
            connector = await session.get(FeishuConnector, message.connector_id)
            existing = await session.scalar(select(Approval).where(found))
            approval = existing or await store.create(
                session,
                connector_id=message.connector_id,
                approvals_required=connector.approvals_required if connector is not None else 1,
                agent_name=agent,
                command=command,
                reason=reason,
                requested_by_open_id=message.open_id,
                requested_by_name=requester_name,
                chat_id=message.chat_id,
                source_message_id=message.message_id,
                ttl=timedelta(seconds=self._settings.approval_ttl),
                request_id=request_id,
            )
        return approval, connector, existing is None

    async def _send_first_card(
        self, approval: Approval, connector: FeishuConnector | None, message: InboundMessage
    ) -> None:
        """Put the card in front of people and remember it; a failure is logged (the approval stays
        PENDING)."""
        try:
            sent = await self._cards.first_delivery(
                approval, connector, reply_to=message.message_id, in_thread=message.in_thread
            )
        except OutboundError as exc:
            await self._log(approval, LogAction.WS_AUTH_CARD, LogLevel.ERROR, ok=False, error=str(exc))
            return
        if not sent:
            await self._log(approval, LogAction.WS_AUTH_CARD, LogLevel.ERROR, ok=False, error="no card sent")
            return
        card_id = sent[0]
        async with self._sessions() as session:
            await store.set_card(session, approval.id, card_id)
        await self._event(approval, EventKind.CARD_SENT, "system", copies=len(sent))
        approval.card_message_id = card_id
        await self._log(
            approval,
            LogAction.WS_AUTH_CARD,
            ok=True,
            card_message_id=card_id,
            chat_id=message.chat_id,
            requested_by=message.open_id,
        )

    # --- decisions ----------------------------------------------------------------------------------
    async def on_card_click(self, connector_id: int, event: CardActionEvent) -> dict[str, Any]:
        """The answer to a click, which Feishu shows at once: a toast and the card as it now stands.

        The work is shielded from the caller's card deadline: once started, checks, decision and the start of
        the command finish in the background even when the answer has gone out as a "still working" toast
        (cancelling between the decision's commit and the command's start would strand it as APPROVED)."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        abandoned = False

        async def work() -> None:
            try:
                result, approval = await self._click(connector_id, event)
            except Exception:
                if not answer.done():
                    answer.set_result({"toast": _toast("error", "Something went wrong; please try again.")})
                raise
            if not answer.done():
                answer.set_result(result)
            if abandoned and approval is not None and "card" in result:
                await self._refresh_card(approval)  # the answer missed Feishu's deadline: update the card

        self._spawn(f"card-click-{event.event_id or id(answer)}", work())
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            abandoned = True
            raise

    async def _refuse_click(
        self, approval: Approval, clicker: str, reason: str, toast: str
    ) -> tuple[dict[str, Any], None]:
        await self._log(
            approval,
            LogAction.WS_AUTH_CARD_DECISION,
            LogLevel.WARN,
            refused=True,
            operator=clicker,
            reason=reason,
        )
        return {"toast": _toast("error", toast)}, None

    async def _click(
        self, connector_id: int, event: CardActionEvent
    ) -> tuple[dict[str, Any], Approval | None]:
        value = event.value
        decision = value.get("decision")
        if not isinstance(decision, str) or decision not in ("approve", "reject"):
            return {"toast": _toast("error", "Unknown decision.")}, None
        approval_id = value.get("approval_id")
        # Strict: our cards carry an int; `true` or "7" is not an approval id.
        if type(approval_id) is not int or not 1 <= approval_id <= MAX_ID:
            return {"toast": _toast("error", "This card is not an approval card.")}, None
        async with self._sessions() as session:
            approval = await session.get(Approval, approval_id)
            connector = await session.get(FeishuConnector, connector_id)
        if approval is None or approval.connector_id != connector_id or connector is None:
            return {"toast": _toast("error", "This approval no longer exists.")}, None
        clicker = event.operator.open_id
        refused = refusal(connector, approval, clicker, decision)
        if refused is not None and refused.reason != "self approval":
            return await self._refuse_click(approval, clicker, refused.reason, refused.toast)
        await self._cards.recover_chat_card(approval)  # sent from the outbox after a restart
        async with self._sessions() as session:
            card_ids = await copies.message_ids(session, approval)
        if not copies.is_one_of(event.open_message_id, card_ids):
            # A click on card X carrying card Y's value must not decide Y (every copy of Y's card is Y's).
            return await self._refuse_click(
                approval, clicker, "not this approval's card", "This button does not belong to this request."
            )
        if refused is not None:  # four-eyes: checked once the click is known to be about this card
            return await self._refuse_click(approval, clicker, refused.reason, refused.toast)
        form = event.form_value or {}
        note = votes.clean_note(form.get(NOTE_FIELD))
        answer, voted, _ = await self._vote(
            approval_id,
            voter=clicker,
            choice=decision,
            note=note,
            via="card",
            answering=event.open_message_id,
        )
        return answer, voted

    async def _vote(
        self, approval_id: int, *, voter: str, choice: str, note: str | None, via: str, answering: str | None
    ) -> tuple[dict[str, Any], Approval, votes.VoteOutcome]:
        """Record one person's vote; decide when it completes the quorum (or is a reject)."""
        async with self._sessions() as session:
            connector_id = (await store.get(session, approval_id)).connector_id
        name = voter if via == "api" else await self.name_of(connector_id, voter)
        async with self._sessions() as session:
            outcome = await votes.cast(
                session,
                approval_id=approval_id,
                voter=voter,
                name=name,
                choice="approve" if choice == "approve" else "reject",
                note=note,
            )
            approval = await store.get(session, approval_id)
        if outcome.recorded:
            await self._event(approval, EventKind.VOTE, voter, name, decision=choice, note=note, via=via)
        if outcome.decision is not None:
            answer = await self._after_decision(outcome.decision, voter, via=via, answering=answering)
            return answer, outcome.decision.approval, outcome
        progress = f"{outcome.approvals} of {outcome.required} approvals"
        if outcome.recorded:
            await self._log(
                approval,
                LogAction.WS_AUTH_CARD_DECISION,
                vote=choice,
                operator=voter,
                via=via,
                progress=progress,
            )
            self._spawn(f"approval-progress-{approval_id}", self._cards.refresh_all(approval, skip=answering))
            toast = _toast("success", f"Your approval is counted: {progress}.")
        else:
            toast = _toast("info", f"You have already voted on this request: {progress}.")
        return {"toast": toast, "card": raw(await self._cards.card(approval))}, approval, outcome

    async def decide_by_admin(
        self, approval_id: int, *, approve: bool, admin: str, reason: str | None
    ) -> store.Decision:
        """An admin's decision from the API is one vote (voter ``admin:<username>``) under the same rules."""
        _, approval, outcome = await self._vote(
            approval_id,
            voter=f"admin:{admin}",
            choice="approve" if approve else "reject",
            note=votes.clean_note(reason),
            via="api",
            answering=None,
        )
        if outcome.decision is not None:
            return outcome.decision
        return store.Decision(False, approval)

    async def _after_decision(
        self, outcome: store.Decision, who: str, *, via: str, answering: str | None
    ) -> dict[str, Any]:
        approval = outcome.approval
        if outcome.expired:
            if outcome.expired_now:
                await self._event(approval, EventKind.EXPIRED, "expiry")
                self._spawn(
                    f"approval-expired-{approval.id}", self._cards.refresh_all(approval, skip=answering)
                )
            await self._log(
                approval, LogAction.WS_AUTH_CARD_DECISION, decision="expired", operator=who, via=via
            )
            await self._finished(approval)
            return {
                "toast": _toast("warning", "This request has expired."),
                "card": raw(await self._cards.card(approval)),
            }
        if not outcome.won:
            # A repeated (or concurrent, losing) click: answer with what was decided, change nothing.
            stored = approval.status.lower()
            return {
                "toast": _toast("info", f"Already {stored} by {approval.decided_by}."),
                "card": raw(await self._cards.card(approval)),
            }
        approved = approval.status == ApprovalStatus.APPROVED.value
        await self._log(
            approval,
            LogAction.WS_AUTH_CARD_DECISION,
            decision="approved" if approved else "rejected",
            operator=who,
            via=via,
        )
        await self._event(
            approval,
            EventKind.DECIDED,
            who,
            await self.name_of(approval.connector_id, who) if via == "card" else who,
            decision="approved" if approved else "rejected",
            note=approval.decision_reason,
        )
        if approved:
            self._spawn(f"execute-approval-{approval.id}", self.execute(approval.id))
        else:
            await self._finished(approval)
        # Every other copy of the card (DMs, reminders, the chat's) is told; the clicked one gets the answer.
        self._spawn(f"approval-copies-{approval.id}", self._cards.refresh_all(approval, skip=answering))
        toast = _toast("success", "Approved: running it now.") if approved else _toast("info", "Rejected.")
        return {"toast": toast, "card": raw(await self._cards.card(approval))}

    # --- execution ----------------------------------------------------------------------------------
    async def execute(self, approval_id: int) -> None:
        """Run an approved command on its agent, wherever it is connected: here, or through the instance
        that holds it (a notification to that instance; it claims the row, runs it, writes the result)."""
        approval = await self._get(approval_id)
        if approval.status != ApprovalStatus.APPROVED.value:
            return
        holder = self._bus.instance_id if self._hub.is_online(approval.agent_name) else None
        if holder is None:
            timeout = timedelta(seconds=self._settings.instance_timeout_seconds)
            async with self._sessions() as session:
                holder = (await online_agents(session, timeout=timeout)).get(approval.agent_name)
        if holder is not None and holder != self._bus.instance_id:
            await self._bus.publish("directive", to=holder, approval_id=approval_id)
            return
        await self.execute_here(approval_id)

    async def _on_directive(self, payload: dict[str, Any]) -> None:
        approval_id = payload.get("approval_id")
        if isinstance(approval_id, int):
            await self.execute_here(approval_id)

    async def run_missed_directives(self) -> None:
        """After this instance's listener was down: approved commands for agents held here that nobody
        took (their notice may have been lost) run now; the claim keeps a late notice from running twice."""
        held = self._hub.online()
        if not held:
            return
        async with self._sessions() as session:
            ids = await store.undispatched(session, agent_names=held)
        for approval_id in ids:
            self._spawn(f"execute-approval-{approval_id}", self.execute_here(approval_id))

    async def execute_here(self, approval_id: int) -> None:
        async with self._sessions() as session:
            if not await store.claim_dispatch(
                session, approval_id=approval_id, instance_id=self._bus.instance_id
            ):
                return  # decided otherwise, or another instance took it already
        approval = await self._get(approval_id)
        await self._event(approval, EventKind.DIRECTIVE_SENT, "system", agent=approval.agent_name)
        try:
            result = await self._hub.run(
                approval.agent_name,
                request_id=approval.request_id,
                command=approval.command,
                reason=approval.reason,
                timeout=self._settings.agent_command_timeout,
            )
        except AgentOffline as exc:
            result = CommandResult(False, str(exc))
        async with self._sessions() as session:
            finished = await store.finish(
                session, approval_id=approval_id, ok=result.ok, output=result.output
            )
        if not finished:
            return  # someone else finished it (cannot happen twice: the UPDATE is conditional)
        approval = await self._get(approval_id)
        await self._event(
            approval, EventKind.RESULT, approval.agent_name, ok=result.ok, status=approval.status
        )
        await self._log(
            approval,
            LogAction.APPROVAL_RESULT,
            LogLevel.INFO if result.ok else LogLevel.WARN,
            ok=result.ok,
            status=approval.status,
        )
        await self._bus.publish("approval_result", approval_id=approval_id)  # the row holds the result
        await self._refresh_card(approval)
        if not await self._finished(approval):
            await self._report(approval, result)

    async def _report(self, approval: Approval, result: CommandResult) -> None:
        if approval.connector_id is None:
            return
        what = f"`{inert(approval.command)}` on {inert(approval.agent_name)}"
        async with self._sessions() as session:
            approvers = [
                v.voter_name
                for v in await votes.for_approval(session, approval.id)
                if v.decision == "approve"
            ]
        by = f" (approved by {inert(', '.join(approvers))})" if approvers else ""
        head = f"✅ {what} finished{by}:" if result.ok else f"❌ {what} failed{by}:"
        try:
            await self._outbound.send_text(
                approval.connector_id,
                chat_id=approval.chat_id,
                text=f"{head}\n{inert(result.output) or '(no output)'}",
                reply_to=approval.source_message_id or None,
                uuid=f"approval-result-{approval.request_id}",
            )
        except OutboundError:
            log.warning("approval_result_not_sent approval_id=%s", approval.id)

    async def _refresh_card(self, approval: Approval) -> None:
        await self._cards.refresh_all(approval)

    # --- time and restarts --------------------------------------------------------------------------
    async def sweep_expired(self) -> int:
        async with self._sessions() as session:
            due = await store.due_for_expiry(session)
        expired = 0
        for approval_id in due:
            async with self._sessions() as session:
                if not await store.expire(session, approval_id):
                    continue  # decided in the meantime
            approval = await self._get(approval_id)
            expired += 1
            await self._event(approval, EventKind.EXPIRED, "expiry")
            await self._log(approval, LogAction.WS_AUTH_CARD_DECISION, decision="expired", operator="expiry")
            await self._refresh_card(approval)
            await self._finished(approval)
        return expired

    async def recover_interrupted(self) -> None:
        """Approved commands whose outcome was lost (a stop, a crash) are marked failed, never run again.

        Only those older than the agent timeout plus a margin: a younger one may still be running on this or
        another instance, which will finish it itself.
        """
        grace = timedelta(seconds=self._settings.agent_command_timeout + RECOVERY_MARGIN_SECONDS)
        async with self._sessions() as session:
            ids = await store.interrupted(session, decided_before=utcnow() - grace)
        for approval_id in ids:
            async with self._sessions() as session:
                done = await store.finish(
                    session,
                    approval_id=approval_id,
                    ok=False,
                    output="interrupted: EchoCenter stopped while the command was out; it was not run again",
                )
            if done:
                approval = await self._get(approval_id)
                await self._event(approval, EventKind.RESULT, "recovery", ok=False, status=approval.status)
                await self._log(
                    approval, LogAction.APPROVAL_RESULT, LogLevel.WARN, ok=False, status=approval.status
                )
                await self._refresh_card(approval)
                await self._finished(approval)

    async def sweep_reminders(self) -> int:
        return await self._reminders.run()
