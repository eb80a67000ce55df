"""What the approvals API reads and answers, and how an approval row becomes an answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import Approval, ApprovalVote


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


def vote_out(vote: ApprovalVote) -> VoteOut:
    return VoteOut(
        voter=vote.voter_open_id,
        name=vote.voter_name or vote.voter_open_id,
        decision="approve" if vote.decision == "approve" else "reject",
        note=vote.note,
        at=vote.created_at,
    )


def approval_out(approval: Approval, cast: list[ApprovalVote] | None = None) -> ApprovalOut:
    out = ApprovalOut.model_validate(approval)
    out.votes = [vote_out(v) for v in cast or []]
    return out
