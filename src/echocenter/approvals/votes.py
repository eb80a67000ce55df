"""Votes: each one a durable row (unique per approval and person), counted towards the approval's quorum.

One reject by an approver ends the request; approvals move it to APPROVED once that many distinct people
approved. The move itself is store.decide's conditional UPDATE, so with votes arriving on several instances
at once it still happens exactly once: every voter commits its vote *before* counting, so the last of them
to count sees all the votes, and whoever moves PENDING → APPROVED first wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.approvals import store
from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import ApprovalVote
from echocenter.db.types import utcnow

NOTE_LIMIT = 500
Choice = Literal["approve", "reject"]


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    decision: store.Decision | None  # set when the request is (now or already) decided or expired
    recorded: bool  # this vote is a new row
    approvals: int  # distinct approvals so far
    required: int


def clean_note(note: object) -> str | None:
    if not isinstance(note, str):
        return None
    note = " ".join(note.split())[:NOTE_LIMIT]
    return note or None


async def _record(
    session: AsyncSession, *, approval_id: int, voter: str, name: str, choice: Choice, note: str | None
) -> bool:
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        dialect_insert(ApprovalVote)
        .values(
            approval_id=approval_id,
            voter_open_id=voter,
            voter_name=name[:128],
            decision=choice,
            note=note,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["approval_id", "voter_open_id"])
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0))


async def approvals_so_far(session: AsyncSession, approval_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(ApprovalVote)
        .where(ApprovalVote.approval_id == approval_id, ApprovalVote.decision == "approve")
    )
    return int(count or 0)


async def cast(
    session: AsyncSession, *, approval_id: int, voter: str, name: str, choice: Choice, note: str | None
) -> VoteOutcome:
    approval = await store.get(session, approval_id)
    required = max(1, approval.approvals_required)
    if approval.status != ApprovalStatus.PENDING.value or approval.expires_at <= utcnow():
        # Decided or run out: no vote is taken; decide() answers with what is stored (and expires it).
        outcome = await store.decide(session, approval_id=approval_id, approve=False, decided_by=voter)
        return VoteOutcome(outcome, False, await approvals_so_far(session, approval_id), required)
    recorded = await _record(
        session, approval_id=approval_id, voter=voter, name=name, choice=choice, note=note
    )
    if recorded and choice == "reject":
        outcome = await store.decide(
            session, approval_id=approval_id, approve=False, decided_by=voter, reason=note
        )
        return VoteOutcome(outcome, True, await approvals_so_far(session, approval_id), required)
    count = await approvals_so_far(session, approval_id)
    if recorded and count >= required:
        outcome = await store.decide(
            session, approval_id=approval_id, approve=True, decided_by=voter, reason=note
        )
        return VoteOutcome(outcome, True, count, required)
    return VoteOutcome(None, recorded, count, required)


async def for_approval(session: AsyncSession, approval_id: int) -> list[ApprovalVote]:
    query = select(ApprovalVote).where(ApprovalVote.approval_id == approval_id).order_by(ApprovalVote.id)
    return list(await session.scalars(query))


async def for_approvals(session: AsyncSession, approval_ids: list[int]) -> dict[int, list[ApprovalVote]]:
    found: dict[int, list[ApprovalVote]] = {i: [] for i in approval_ids}
    if approval_ids:
        rows = await session.scalars(
            select(ApprovalVote).where(ApprovalVote.approval_id.in_(approval_ids)).order_by(ApprovalVote.id)
        )
        for vote in rows:
            found[vote.approval_id].append(vote)
    return found
