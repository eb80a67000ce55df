"""From "the Butler wants to run a command" to "it ran, once, and everyone can see who decided":
request → card → decision (card click or admin API) → execution on the agent → result in chat and on the card.
Expiry and restart recovery live here too."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from echocenter.agents.hub import AgentHub, AgentOffline, CommandResult
from echocenter.approvals import store
from echocenter.approvals.states import ApprovalStatus
from echocenter.butler.interface import InboundMessage
from echocenter.cluster.bus import EventBus, InProcessBus
from echocenter.cluster.presence import online_agents
from echocenter.db.models import Approval, FeishuConnector, LogLevel
from echocenter.db.types import utcnow
from echocenter.feishu.cards import approval_card, raw
from echocenter.feishu.events import CardActionEvent
from echocenter.feishu.outbound import Outbound, OutboundError
from echocenter.feishu.untrusted import inert
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

Spawn = Callable[[str, Awaitable[None]], None]
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
        self, *, message: InboundMessage, requester_name: str, agent: str, command: str, reason: str
    ) -> Approval:
        """Write the PENDING approval first (durable), then put the card in front of people. A re-driven
        message (durable inbox) finds its approval already there and does not ask twice."""
        async with self._sessions() as session:
            approval = await session.scalar(
                select(Approval).where(
                    Approval.connector_id == message.connector_id,
                    Approval.source_message_id == message.message_id,
                )
            ) or await store.create(
                session,
                connector_id=message.connector_id,
                agent_name=agent,
                command=command,
                reason=reason,
                requested_by_open_id=message.open_id,
                requested_by_name=requester_name,
                chat_id=message.chat_id,
                source_message_id=message.message_id,
                ttl=timedelta(seconds=self._settings.approval_ttl),
            )
        if approval.card_message_id:
            return approval
        try:
            card_id = await self._outbound.send_card(
                message.connector_id,
                chat_id=message.chat_id,
                card=approval_card(approval),
                reply_to=message.message_id,
                uuid=f"approval-card-{approval.request_id}"[:50],
                in_thread=message.in_thread,
            )
        except OutboundError as exc:
            await self._log(approval, LogAction.WS_AUTH_CARD, LogLevel.ERROR, ok=False, error=str(exc))
            return approval
        async with self._sessions() as session:
            await store.set_card(session, approval.id, card_id)
        approval.card_message_id = card_id
        await self._log(
            approval,
            LogAction.WS_AUTH_CARD,
            ok=True,
            card_message_id=card_id,
            chat_id=message.chat_id,
            requested_by=message.open_id,
        )
        return approval

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
        if not connector.enabled:
            return await self._refuse_click(
                approval,
                clicker,
                "connector disabled",
                "This connector is disabled: nothing is decided.",
            )
        if clicker not in set(connector.approvers):
            return await self._refuse_click(
                approval, clicker, "not an approver", "You are not allowed to approve commands here."
            )
        if not approval.card_message_id or not hmac.compare_digest(
            event.open_message_id.encode(), approval.card_message_id.encode()
        ):
            # A click on card X carrying card Y's value must not decide Y.
            return await self._refuse_click(
                approval, clicker, "not this approval's card", "This button does not belong to this request."
            )

        async with self._sessions() as session:
            outcome = await store.decide(
                session, approval_id=approval_id, approve=decision == "approve", decided_by=clicker
            )
        return await self._after_decision(outcome, clicker, via="card"), outcome.approval

    async def decide_by_admin(
        self, approval_id: int, *, approve: bool, admin: str, reason: str | None
    ) -> store.Decision:
        async with self._sessions() as session:
            outcome = await store.decide(
                session, approval_id=approval_id, approve=approve, decided_by=f"admin:{admin}", reason=reason
            )
        await self._after_decision(outcome, f"admin:{admin}", via="api")
        if outcome.won or outcome.expired:
            await self._refresh_card(outcome.approval)  # nobody clicked: the card must be told
        return outcome

    async def _after_decision(self, outcome: store.Decision, who: str, *, via: str) -> dict[str, Any]:
        approval = outcome.approval
        if outcome.expired:
            await self._log(
                approval, LogAction.WS_AUTH_CARD_DECISION, decision="expired", operator=who, via=via
            )
            return {
                "toast": _toast("warning", "This request has expired."),
                "card": raw(approval_card(approval)),
            }
        if not outcome.won:
            # A repeated (or concurrent, losing) click: answer with what was decided, change nothing.
            stored = approval.status.lower()
            return {
                "toast": _toast("info", f"Already {stored} by {approval.decided_by}."),
                "card": raw(approval_card(approval)),
            }
        approved = approval.status == ApprovalStatus.APPROVED.value
        await self._log(
            approval,
            LogAction.WS_AUTH_CARD_DECISION,
            decision="approved" if approved else "rejected",
            operator=who,
            via=via,
        )
        if approved:
            self._spawn(f"execute-approval-{approval.id}", self.execute(approval.id))
        toast = _toast("success", "Approved: running it now.") if approved else _toast("info", "Rejected.")
        return {"toast": toast, "card": raw(approval_card(approval))}

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
        await self._log(
            approval,
            LogAction.APPROVAL_RESULT,
            LogLevel.INFO if result.ok else LogLevel.WARN,
            ok=result.ok,
            status=approval.status,
        )
        await self._bus.publish("approval_result", approval_id=approval_id)  # the row holds the result
        await self._refresh_card(approval)
        await self._report(approval, result)

    async def _report(self, approval: Approval, result: CommandResult) -> None:
        if approval.connector_id is None:
            return
        what = f"`{inert(approval.command)}` on {inert(approval.agent_name)}"
        head = f"✅ {what} finished:" if result.ok else f"❌ {what} failed:"
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
        if approval.connector_id is None or not approval.card_message_id:
            return
        try:
            await self._outbound.update_card(
                approval.connector_id, message_id=approval.card_message_id, card=approval_card(approval)
            )
        except OutboundError:
            log.warning("approval_card_not_updated approval_id=%s", approval.id)

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
            await self._log(approval, LogAction.WS_AUTH_CARD_DECISION, decision="expired", operator="expiry")
            await self._refresh_card(approval)
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
                await self._log(
                    approval, LogAction.APPROVAL_RESULT, LogLevel.WARN, ok=False, status=approval.status
                )
                await self._refresh_card(approval)
