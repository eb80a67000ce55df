"""Interactive cards for approvals (Feishu card JSON 1.0, ``update_multi`` so everyone sees the decision)."""

from __future__ import annotations

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


def _who(decided_by: str | None) -> str:
    if not decided_by:
        return "nobody"
    if decided_by.startswith("ou_"):
        return f"<at id={decided_by}></at>"
    return decided_by


def _when(approval: Approval) -> str:
    return approval.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if approval.decided_at else ""


def _escape_code(text: str) -> str:
    return text.replace("```", "ʼʼʼ")


def _facts(approval: Approval) -> str:
    lines = [
        f"**Agent** {approval.agent_name}",
        f"**Command** `{approval.command.replace('`', 'ʼ')}`",
    ]
    if approval.reason:
        lines.append(f"**Reason** {approval.reason}")
    lines.append(f"**Asked by** {approval.requested_by_name or approval.requested_by_open_id}")
    return "\n".join(lines)


def approval_card(approval: Approval) -> dict[str, Any]:
    status = ApprovalStatus(approval.status)
    template, title = _LOOK[status]
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": _facts(approval)}]
    if status is ApprovalStatus.PENDING:
        elements.append(
            {"tag": "markdown", "content": f"Expires {approval.expires_at:%Y-%m-%d %H:%M:%S} UTC"}
        )
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
        elements.append(
            {"tag": "markdown", "content": f"Nobody decided before {approval.expires_at:%H:%M:%S} UTC."}
        )
    else:
        verb = "Rejected" if status is ApprovalStatus.REJECTED else "Approved"
        decision = f"{verb} by {_who(approval.decided_by)} at {_when(approval)}"
        if approval.decision_reason:
            decision += f"\n**Note** {approval.decision_reason}"
        elements.append({"tag": "markdown", "content": decision})
        if approval.output is not None:
            output = approval.output[-OUTPUT_LIMIT_CHARS:]
            elements.append(
                {"tag": "markdown", "content": f"```\n{_escape_code(output) or '(no output)'}\n```"}
            )
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
