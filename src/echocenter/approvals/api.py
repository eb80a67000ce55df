"""Admin routes for approvals: list, read (with votes and the timeline), decide (the same rules as a card
click), export, and verify the timeline's hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from echocenter.api.deps import SessionDep, SessionsDep
from echocenter.approvals import export, store, timeline, votes
from echocenter.approvals.deps import WorkflowDep
from echocenter.approvals.states import ApprovalStatus
from echocenter.auth.deps import CurrentAdmin
from echocenter.db.models import Approval, ApprovalVote

router = APIRouter(prefix="/api/approvals", tags=["approvals"])
ApprovalId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class VoteOut(BaseModel):
    voter: str = Field(description="open_id, or admin:<username> for a decision through this API")
    name: str = Field(description="the voter's name from Feishu's contact API (the open_id when refused)")
    decision: Literal["approve", "reject"]
    note: str | None
    at: datetime


class EventOut(BaseModel):
    id: int
    kind: str = Field(
        description="requested | card_sent | vote | decided | expired | directive_sent | result | reminded | "
        "escalated"
    )
    actor: str
    actor_name: str
    detail: dict[str, Any]
    created_at: datetime
    prev_hash: str
    hash: str = Field(description="SHA-256 over prev_hash and the row's canonical content")


class ApprovalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    connector_id: int | None
    status: ApprovalStatus
    agent_name: str
    command: str
    reason: str
    requested_by_open_id: str
    requested_by_name: str
    chat_id: str
    source_message_id: str
    card_message_id: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    finished_at: datetime | None
    output: str | None
    approvals_required: int = 1
    votes: list[VoteOut] = []


class ApprovalDetail(ApprovalOut):
    events: list[EventOut] = []


class AuditVerification(BaseModel):
    ok: bool
    checked: int = Field(description="timeline rows read")
    broken_at: int | None = Field(description="id of the first event that does not fit the chain")
    approval_id: int | None
    problem: str | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: StrictStr | None = Field(default=None, max_length=500)


class DecisionOut(BaseModel):
    decided: bool = Field(
        description="true when this request made the decision; false: it was decided already"
    )
    approval: ApprovalOut


def _vote_out(vote: ApprovalVote) -> VoteOut:
    return VoteOut(
        voter=vote.voter_open_id,
        name=vote.voter_name or vote.voter_open_id,
        decision="approve" if vote.decision == "approve" else "reject",
        note=vote.note,
        at=vote.created_at,
    )


def _out(approval: Approval, cast: list[ApprovalVote] | None = None) -> ApprovalOut:
    out = ApprovalOut.model_validate(approval)
    out.votes = [_vote_out(v) for v in cast or []]
    return out


@router.get("", response_model=list[ApprovalOut], summary="Approvals, pending first")
async def list_approvals(
    _: CurrentAdmin,
    session: SessionDep,
    status: ApprovalStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalOut]:
    found = await store.list_approvals(session, status=status, limit=limit)
    cast = await votes.for_approvals(session, [a.id for a in found])
    return [_out(a, cast[a.id]) for a in found]


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
    detail = ApprovalDetail(**_out(approval, await votes.for_approval(session, approval_id)).model_dump())
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
    return DecisionOut(decided=outcome.won, approval=_out(outcome.approval))
