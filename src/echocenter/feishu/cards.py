"""Interactive cards for approvals (Feishu card JSON 1.0, ``update_multi`` so everyone sees the decision)."""

from __future__ import annotations

import re
from typing import Any

from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import Approval

OUTPUT_LIMIT_CHARS = 8000  # keeps a card well under Feishu's 30 KB

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


def approval_card(approval: Approval) -> dict[str, Any]:
    status = ApprovalStatus(approval.status)
    template, title = _LOOK[status]
    elements = _facts(approval)
    if status is ApprovalStatus.PENDING:
        elements.append(plain(f"Expires {approval.expires_at:%Y-%m-%d %H:%M:%S} UTC"))
        elements.append(
            {
                "tag": "action",
                "actions": [
                    _button("Approve", "primary", approval.id, "approve"),
                    _button("Reject", "danger", approval.id, "reject"),
                ],
            }
        )
    elif status is ApprovalStatus.EXPIRED:
        elements.append(plain(f"Nobody decided before {approval.expires_at:%H:%M:%S} UTC."))
    else:
        elements.append(_decision(approval, status))
        if approval.decision_reason:
            elements.append(plain(f"Note: {approval.decision_reason}"))
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
        "text": {"tag": "plain_text", "content": text},
        "value": {"approval_id": approval_id, "decision": decision},
    }


def raw(card: dict[str, Any]) -> dict[str, Any]:
    """A card as a callback answer's replacement card."""
    return {"type": "raw", "data": card}
