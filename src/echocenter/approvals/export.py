"""The approvals and their timelines as CSV (one row per event) or JSON Lines (one approval per line, with
its votes and events), read from the database page by page so an export of any size streams."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.approvals import timeline, votes
from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import Approval, ApprovalEvent, ApprovalVote

PAGE = 200
CSV_COLUMNS = (
    "approval_id",
    "status",
    "agent_name",
    "command",
    "requested_by_open_id",
    "requested_by_name",
    "event_id",
    "event_kind",
    "actor",
    "actor_name",
    "detail",
    "created_at",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: commands and names are untrusted, so a leading =, +, - or @
    is quoted with an apostrophe (OWASP's advice against CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def approval_record(
    approval: Approval, cast: list[ApprovalVote], events: list[ApprovalEvent]
) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": approval.status,
        "agent_name": approval.agent_name,
        "command": approval.command,
        "reason": approval.reason,
        "requested_by_open_id": approval.requested_by_open_id,
        "requested_by_name": approval.requested_by_name,
        "approvals_required": approval.approvals_required,
        "created_at": _stamp(approval.created_at),
        "decided_at": _stamp(approval.decided_at),
        "decided_by": approval.decided_by,
        "decision_reason": approval.decision_reason,
        "finished_at": _stamp(approval.finished_at),
        "votes": [
            {
                "voter": v.voter_open_id,
                "name": v.voter_name,
                "decision": v.decision,
                "note": v.note,
                "at": _stamp(v.created_at),
            }
            for v in cast
        ],
        "events": [timeline.event_view(e) for e in events],
    }


async def _pages(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status: ApprovalStatus | None,
    since: datetime | None,
    until: datetime | None,
) -> AsyncIterator[list[tuple[Approval, list[ApprovalVote], list[ApprovalEvent]]]]:
    after = 0
    while True:
        async with sessions() as session:
            query = select(Approval).where(Approval.id > after)
            if status is not None:
                query = query.where(Approval.status == status.value)
            if since is not None:
                query = query.where(Approval.created_at >= since)
            if until is not None:
                query = query.where(Approval.created_at < until)
            page = list(await session.scalars(query.order_by(Approval.id).limit(PAGE)))
            if not page:
                return
            ids = [a.id for a in page]
            cast = await votes.for_approvals(session, ids)
            events: dict[int, list[ApprovalEvent]] = {i: [] for i in ids}
            for event in await session.scalars(
                select(ApprovalEvent).where(ApprovalEvent.approval_id.in_(ids)).order_by(ApprovalEvent.id)
            ):
                events[event.approval_id].append(event)
        yield [(a, cast[a.id], events[a.id]) for a in page]
        after = page[-1].id


async def jsonl(sessions: async_sessionmaker[AsyncSession], **filters: Any) -> AsyncIterator[str]:
    async for page in _pages(sessions, **filters):
        yield "".join(json.dumps(approval_record(*row), ensure_ascii=False) + "\n" for row in page)


async def csv_rows(sessions: async_sessionmaker[AsyncSession], **filters: Any) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    async for page in _pages(sessions, **filters):
        buffer.seek(0)
        buffer.truncate()
        for approval, _, events in page:
            for event in events:
                view = timeline.event_view(event)
                writer.writerow(
                    [
                        _cell(v)
                        for v in (
                            approval.id,
                            approval.status,
                            approval.agent_name,
                            approval.command,
                            approval.requested_by_open_id,
                            approval.requested_by_name,
                            view["id"],
                            view["kind"],
                            view["actor"],
                            view["actor_name"],
                            json.dumps(view["detail"], ensure_ascii=False, sort_keys=True),
                            view["created_at"],
                            view["prev_hash"],
                            view["hash"],
                        )
                    ]
                )
        yield buffer.getvalue()
