"""Reminders and escalation. A pending approval older than APPROVAL_REMIND_AFTER sends each approver a DM
with the card, once (``reminded_at`` is claimed with a conditional UPDATE, so one instance does it); after
APPROVAL_ESCALATE_AFTER the connector's ``escalation_approvers`` become approvers too and get the card."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.approvals import store, timeline
from echocenter.approvals.delivery import CardDelivery
from echocenter.approvals.policy import approvers_for
from echocenter.approvals.timeline import EventKind
from echocenter.db.models import FeishuConnector, LogLevel
from echocenter.db.types import utcnow
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.settings import Settings


class ReminderSweep:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, delivery: CardDelivery
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._delivery = delivery

    async def run(self) -> int:
        done = 0
        if self._settings.approval_remind_after > 0:
            done += await self._pass("reminded_at", self._settings.approval_remind_after)
        if self._settings.approval_escalate_after > 0:
            done += await self._pass("escalated_at", self._settings.approval_escalate_after)
        return done

    async def _pass(self, column: str, after_seconds: float) -> int:
        async with self._sessions() as session:
            due = await store.pending_older_than(
                session, created_before=utcnow() - timedelta(seconds=after_seconds), unset=column
            )
        done = 0
        for approval_id in due:
            async with self._sessions() as session:
                approval = await store.get(session, approval_id)
                connector = (
                    await session.get(FeishuConnector, approval.connector_id)
                    if approval.connector_id
                    else None
                )
                if connector is None:
                    continue
                if column == "escalated_at" and not connector.escalation_approvers:
                    continue  # nobody to escalate to
                if not await store.claim_once(session, approval_id, column):
                    continue  # another instance (or an earlier pass) did it
                approval = await store.get(session, approval_id)
            if column == "reminded_at":
                people, purpose, kind = approvers_for(connector, approval), "remind", EventKind.REMINDED
            else:
                people, purpose, kind = list(connector.escalation_approvers), "escalate", EventKind.ESCALATED
            sent = [p for p in people if await self._delivery.to_person(approval, p, purpose=purpose)]
            await timeline.append(
                self._sessions,
                approval_id=approval_id,
                kind=kind,
                actor="system",
                people=people,
                sent=len(sent),
            )
            await record_now(
                self._sessions,
                connector_id=approval.connector_id,
                action=LogAction.APPROVAL_REMINDER,
                level=LogLevel.INFO if len(sent) == len(people) else LogLevel.WARN,
                approval_id=approval_id,
                kind=kind,
                people=people,
                sent=len(sent),
            )
            done += 1
        return done
