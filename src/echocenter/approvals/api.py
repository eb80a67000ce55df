"""Admin routes for approvals: list, read (with votes and the timeline), decide (the same rules as a card
click), export, and verify the timeline's hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from echocenter.api.deps import SessionDep, SessionsDep
from echocenter.approvals import export, store, timeline, votes
from echocenter.approvals.deps import WorkflowDep
from echocenter.approvals.schemas import (
    ApprovalDetail,
    ApprovalOut,
    AuditVerification,
    DecisionIn,
    DecisionOut,
    EventOut,
    approval_out,
)
from echocenter.approvals.states import ApprovalStatus
from echocenter.auth.deps import CurrentAdmin

router = APIRouter(prefix="/api/approvals", tags=["approvals"])
ApprovalId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", response_model=list[ApprovalOut], summary="Approvals, pending first")
async def list_approvals(
    _: CurrentAdmin,
    session: SessionDep,
    status: ApprovalStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalOut]:
    found = await store.list_approvals(session, status=status, limit=limit)
    cast = await votes.for_approvals(session, [a.id for a in found])
    return [approval_out(a, cast[a.id]) for a in found]


@router.get("/export", summary="Approvals with votes and timeline, streamed as CSV or JSON Lines")
async def export_approvals(
    _: CurrentAdmin,
    session: SessionDep,
    sessions: SessionsDep,
    format: Literal["csv", "jsonl"] = "jsonl",
    status: ApprovalStatus | None = None,
    from_: Annotated[
        datetime | None, Query(alias="from", description="created at or after (ISO 8601)")
    ] = None,
    to: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
) -> StreamingResponse:
    # The stream reads with sessions of its own: hand back the request's connection (SQLite pools one).
    await session.close()
    filters: dict[str, Any] = {"status": status, "since": from_, "until": to}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if format == "csv":
        body, media = export.csv_rows(sessions, **filters), "text/csv; charset=utf-8"
    else:
        body, media = export.jsonl(sessions, **filters), "application/x-ndjson"
    disposition = f'attachment; filename="approvals-{stamp}.{format}"'
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/audit/verify", response_model=AuditVerification, summary="Check the timeline's hash chain")
async def verify_timeline(_: CurrentAdmin, session: SessionDep) -> AuditVerification:
    result = await timeline.verify(session)
    return AuditVerification(**result.as_dict())


@router.get("/{approval_id}", response_model=ApprovalDetail, summary="One approval, its votes and timeline")
async def read_approval(approval_id: ApprovalId, _: CurrentAdmin, session: SessionDep) -> ApprovalDetail:
    approval = await store.get(session, approval_id)
    detail = ApprovalDetail(
        **approval_out(approval, await votes.for_approval(session, approval_id)).model_dump()
    )
    detail.events = [
        EventOut(**timeline.event_view(e)) for e in await timeline.for_approval(session, approval_id)
    ]
    return detail


@router.post("/{approval_id}/decision", response_model=DecisionOut, summary="Approve or reject")
async def decide(
    approval_id: ApprovalId, body: DecisionIn, admin: CurrentAdmin, session: SessionDep, workflow: WorkflowDep
) -> DecisionOut:
    await store.get(session, approval_id)  # 404 before anything else
    await session.close()
    outcome = await workflow.decide_by_admin(
        approval_id, approve=body.decision == "approve", admin=admin.username, reason=body.reason
    )
    return DecisionOut(decided=outcome.won, approval=approval_out(outcome.approval))
