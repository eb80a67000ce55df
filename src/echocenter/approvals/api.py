"""Admin routes for approvals: list, read, decide (the same exactly-once rule as a card click)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from echocenter.api.deps import CurrentAdmin, SessionDep
from echocenter.approvals import store
from echocenter.approvals.states import ApprovalStatus
from echocenter.approvals.workflow import ApprovalWorkflow
from echocenter.db.models import Approval

router = APIRouter(prefix="/api/approvals", tags=["approvals"])
ApprovalId = Annotated[int, Path(ge=1, le=2**31 - 1)]


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


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: StrictStr | None = Field(default=None, max_length=500)


class DecisionOut(BaseModel):
    decided: bool = Field(
        description="true when this request made the decision; false: it was decided already"
    )
    approval: ApprovalOut


def _workflow(request: Request) -> ApprovalWorkflow:
    workflow: ApprovalWorkflow = request.app.state.workflow
    return workflow


def _out(approval: Approval) -> ApprovalOut:
    return ApprovalOut.model_validate(approval)


@router.get("", response_model=list[ApprovalOut], summary="Approvals, pending first")
async def list_approvals(
    _: CurrentAdmin,
    session: SessionDep,
    status: ApprovalStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalOut]:
    return [_out(a) for a in await store.list_approvals(session, status=status, limit=limit)]


@router.get("/{approval_id}", response_model=ApprovalOut, summary="One approval")
async def read_approval(approval_id: ApprovalId, _: CurrentAdmin, session: SessionDep) -> ApprovalOut:
    return _out(await store.get(session, approval_id))


@router.post("/{approval_id}/decision", response_model=DecisionOut, summary="Approve or reject")
async def decide(
    approval_id: ApprovalId, body: DecisionIn, admin: CurrentAdmin, session: SessionDep, request: Request
) -> DecisionOut:
    await store.get(session, approval_id)  # 404 before anything else
    await session.close()
    outcome = await _workflow(request).decide_by_admin(
        approval_id, approve=body.decision == "approve", admin=admin.username, reason=body.reason
    )
    return DecisionOut(decided=outcome.won, approval=_out(outcome.approval))
