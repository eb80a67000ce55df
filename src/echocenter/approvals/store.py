"""Approvals in the database. Every state change is one conditional UPDATE (… WHERE status = <from>), so it
happens exactly once even with two clicks on two instances; the loser reads the stored outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.approvals.states import ApprovalStatus, transition
from echocenter.db.models import Approval
from echocenter.db.types import utcnow
from echocenter.errors import NotFound


async def create(
    session: AsyncSession,
    *,
    connector_id: int | None,
    approvals_required: int = 1,
    agent_name: str,
    command: str,
    reason: str,
    requested_by_open_id: str,
    requested_by_name: str,
    chat_id: str,
    source_message_id: str,
    ttl: timedelta,
    request_id: str | None = None,
) -> Approval:
    now = utcnow()
    approval = Approval(
        connector_id=connector_id,
        approvals_required=approvals_required,
        status=ApprovalStatus.PENDING.value,
        agent_name=agent_name,
        command=command,
        reason=reason,
        request_id=request_id or uuid.uuid4().hex,
        requested_by_open_id=requested_by_open_id,
        requested_by_name=requested_by_name,
        chat_id=chat_id,
        source_message_id=source_message_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(approval)
    await session.commit()
    return approval


async def get(session: AsyncSession, approval_id: int) -> Approval:
    approval = await session.get(Approval, approval_id, populate_existing=True)
    if approval is None:
        raise NotFound(f"approval {approval_id} does not exist")
    return approval


async def _move(
    session: AsyncSession,
    approval_id: int,
    source: ApprovalStatus,
    target: ApprovalStatus,
    *,
    extra_where: Any = None,
    **values: Any,
) -> bool:
    transition(source, target)
    query = update(Approval).where(Approval.id == approval_id, Approval.status == source.value)
    if extra_where is not None:
        query = query.where(extra_where)
    result = await session.execute(
        query.values(status=target.value, **values).execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Decision:
    won: bool  # this call made the decision
    approval: Approval  # as stored after the call
    expired: bool = False  # the request had run out before anyone decided
    expired_now: bool = False  # ...and this call is the one that marked it EXPIRED


async def decide(
    session: AsyncSession, *, approval_id: int, approve: bool, decided_by: str, reason: str | None = None
) -> Decision:
    now = utcnow()
    target = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    won = await _move(
        session,
        approval_id,
        ApprovalStatus.PENDING,
        target,
        extra_where=Approval.expires_at > now,
        decided_at=now,
        decided_by=decided_by,
        decision_reason=reason,
    )
    approval = await get(session, approval_id)
    if not won and approval.status == ApprovalStatus.PENDING.value and approval.expires_at <= now:
        expired_now = await expire(session, approval_id)
        return Decision(False, await get(session, approval_id), expired=True, expired_now=expired_now)
    return Decision(won, approval, expired=approval.status == ApprovalStatus.EXPIRED.value)


async def expire(session: AsyncSession, approval_id: int) -> bool:
    return await _move(
        session,
        approval_id,
        ApprovalStatus.PENDING,
        ApprovalStatus.EXPIRED,
        extra_where=Approval.expires_at <= utcnow(),
        decided_at=utcnow(),
        decided_by="expiry",
    )


async def finish(session: AsyncSession, *, approval_id: int, ok: bool, output: str) -> bool:
    target = ApprovalStatus.EXECUTED if ok else ApprovalStatus.FAILED
    return await _move(
        session, approval_id, ApprovalStatus.APPROVED, target, finished_at=utcnow(), output=output
    )


async def due_for_expiry(session: AsyncSession, *, now: datetime | None = None) -> list[int]:
    query = select(Approval.id).where(
        Approval.status == ApprovalStatus.PENDING.value, Approval.expires_at <= (now or utcnow())
    )
    return list(await session.scalars(query))


async def interrupted(session: AsyncSession, *, decided_before: datetime) -> list[int]:
    """Approved before ``decided_before`` but never finished: whoever sent the command stopped, or lost it."""
    query = select(Approval.id).where(
        Approval.status == ApprovalStatus.APPROVED.value, Approval.decided_at < decided_before
    )
    return list(await session.scalars(query))


async def set_card(session: AsyncSession, approval_id: int, card_message_id: str) -> None:
    await session.execute(
        update(Approval).where(Approval.id == approval_id).values(card_message_id=card_message_id)
    )
    await session.commit()


async def list_approvals(
    session: AsyncSession, *, status: ApprovalStatus | None = None, limit: int = 100
) -> list[Approval]:
    # Pending first, then the newest.
    query = select(Approval)
    if status is not None:
        query = query.where(Approval.status == status.value)
    pending_first = Approval.status != ApprovalStatus.PENDING.value
    return list(await session.scalars(query.order_by(pending_first, Approval.id.desc()).limit(limit)))


async def claim_dispatch(session: AsyncSession, *, approval_id: int, instance_id: str) -> bool:
    """Take an approved command to its agent: once, by one instance (a conditional UPDATE)."""
    result = await session.execute(
        update(Approval)
        .where(
            Approval.id == approval_id,
            Approval.status == ApprovalStatus.APPROVED.value,
            Approval.dispatched_to.is_(None),
        )
        .values(dispatched_to=instance_id)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def claim_once(session: AsyncSession, approval_id: int, column: str) -> bool:
    """Set ``reminded_at`` / ``escalated_at`` if still unset and the approval still pending: True for the one
    caller (on any instance) that did it."""
    field = getattr(Approval, column)
    result = await session.execute(
        update(Approval)
        .where(Approval.id == approval_id, field.is_(None), Approval.status == ApprovalStatus.PENDING.value)
        .values({column: utcnow()})
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def undispatched(session: AsyncSession, *, agent_names: list[str]) -> list[int]:
    """Approved commands for these agents that no instance has taken to its agent yet."""
    query = select(Approval.id).where(
        Approval.status == ApprovalStatus.APPROVED.value,
        Approval.dispatched_to.is_(None),
        Approval.agent_name.in_(agent_names),
    )
    return list(await session.scalars(query.order_by(Approval.id)))


async def pending_older_than(session: AsyncSession, *, created_before: datetime, unset: str) -> list[int]:
    field = getattr(Approval, unset)
    query = select(Approval.id).where(
        Approval.status == ApprovalStatus.PENDING.value,
        Approval.created_at <= created_before,
        Approval.expires_at > utcnow(),
        field.is_(None),
    )
    return list(await session.scalars(query))
