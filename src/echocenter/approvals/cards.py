"""Interactive cards for approvals (Feishu card JSON 1.0, ``update_multi`` so everyone sees the decision)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import Approval, ApprovalVote

OUTPUT_LIMIT_CHARS = 8000  # keeps a card well under Feishu's 30 KB
FORM_NAME = "decision"
NOTE_FIELD = "note"  # the input whose text arrives as action.form_value.note

_LOOK = {
    ApprovalStatus.PENDING: ("orange", "Approval needed"),
    ApprovalStatus.APPROVED: ("blue", "Approved — running"),
    ApprovalStatus.REJECTED: ("red", "Rejected"),
    ApprovalStatus.EXPIRED: ("grey", "Expired"),
    ApprovalStatus.EXECUTED: ("green", "Approved — done"),
    ApprovalStatus.FAILED: ("red", "Approved — failed"),
}


OPEN_ID = re.compile(r"^ou_[A-Za-z0-9_-]{1,60}$")


def plain(text: str) -> dict[str, Any]:
    """A card element showing ``text`` as it is: plain_text is never read as markdown, so no untrusted value
    (command, reason, names, output) can turn into bold, links, headings, <font> or an <at> of everyone."""
    return {"tag": "div", "text": {"tag": "plain_text", "content": text}}


def _when(approval: Approval) -> str:
    return approval.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if approval.decided_at else ""


def _facts(approval: Approval) -> list[dict[str, Any]]:
    facts = [plain(f"Agent: {approval.agent_name}"), plain(f"Command: {approval.command}")]
    if approval.reason:
        facts.append(plain(f"Reason: {approval.reason}"))
    facts.append(plain(f"Asked by: {approval.requested_by_name or approval.requested_by_open_id}"))
    return facts


def _decision(approval: Approval, status: ApprovalStatus) -> dict[str, Any]:
    verb = "Rejected" if status is ApprovalStatus.REJECTED else "Approved"
    who = approval.decided_by or "nobody"
    if OPEN_ID.match(who):  # a Feishu open_id: mention the person (the only markup, built from a checked id)
        return {"tag": "markdown", "content": f"{verb} by <at id={who}></at> at {_when(approval)}"}
    return plain(f"{verb} by {who} at {_when(approval)}")


def _progress(approval: Approval, votes: Sequence[ApprovalVote]) -> dict[str, Any] | None:
    """Progress while a quorum is gathered, e.g. "1 of 2 approvals: Bob Li"."""
    approvers = [v.voter_name or v.voter_open_id for v in votes if v.decision == "approve"]
    required = max(1, approval.approvals_required or 1)
    if required == 1 and not approvers:
        return None
    line = f"{len(approvers)} of {required} approvals"
    return plain(f"{line}: {', '.join(approvers)}" if approvers else line)


def _vote_lines(votes: Sequence[ApprovalVote]) -> list[dict[str, Any]]:
    lines = []
    for vote in votes:
        verb = "approved" if vote.decision == "approve" else "rejected"
        when = vote.created_at.strftime("%H:%M:%S UTC")
        note = f" — {vote.note}" if vote.note else ""
        lines.append(plain(f"{vote.voter_name or vote.voter_open_id} {verb} at {when}{note}"))
    return lines


def _decision_form(approval: Approval) -> dict[str, Any]:
    """Approve / Reject inside a form with a note field: the note (a reason, when rejecting) arrives with the
    click as ``action.form_value``; the buttons still carry the approval and the decision in ``value``."""
    return {
        "tag": "form",
        "name": FORM_NAME,
        "elements": [
            {
                "tag": "input",
                "name": NOTE_FIELD,
                "max_length": 500,
                "placeholder": {
                    "tag": "plain_text",
                    "content": "Note, or the reason for a reject (optional)",
                },
            },
            _button("Approve", "primary", approval.id, "approve"),
            _button("Reject", "danger", approval.id, "reject"),
        ],
    }


def approval_card(approval: Approval, votes: Sequence[ApprovalVote] = ()) -> dict[str, Any]:
    status = ApprovalStatus(approval.status)
    template, title = _LOOK[status]
    elements = _facts(approval)
    if status is ApprovalStatus.PENDING:
        elements.append(plain(f"Expires {approval.expires_at:%Y-%m-%d %H:%M:%S} UTC"))
        progress = _progress(approval, votes)
        if progress is not None:
            elements.append(progress)
        elements.append(_decision_form(approval))
    elif status is ApprovalStatus.EXPIRED:
        elements.append(plain(f"Nobody decided before {approval.expires_at:%H:%M:%S} UTC."))
        elements.extend(_vote_lines(votes))
    else:
        elements.append(_decision(approval, status))
        if approval.decision_reason:
            label = "Reason" if status is ApprovalStatus.REJECTED else "Note"
            elements.append(plain(f"{label}: {approval.decision_reason}"))
        if len(votes) > 1:
            elements.extend(_vote_lines(votes))
        if approval.output is not None:
            elements.append(plain(approval.output[-OUTPUT_LIMIT_CHARS:] or "(no output)"))
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "header": {
            "template": template,
            "title": {"tag": "plain_text", "content": f"{title}: {approval.agent_name}"},
        },
        "elements": elements,
    }


def _button(text: str, kind: str, approval_id: int, decision: str) -> dict[str, Any]:
    return {
        "tag": "button",
        "type": kind,
        "name": decision,
        "action_type": "form_submit",  # card JSON 1.0: submits the form (the note) with the click
        "text": {"tag": "plain_text", "content": text},
        "value": {"approval_id": approval_id, "decision": decision},
    }


def raw(card: dict[str, Any]) -> dict[str, Any]:
    """A card as a callback answer's replacement card."""
    return {"type": "raw", "data": card}
