"""Who may decide an approval: pure functions of the connector's settings and the approval (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echocenter.db.models import Approval, FeishuConnector

Delivery = Literal["chat", "approvers", "both"]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # logged
    toast: str  # shown to the person who clicked


def approvers_for(connector: FeishuConnector, approval: Approval) -> list[str]:
    """The connector's approvers, and its escalation approvers once the approval was escalated."""
    people = list(connector.approvers)
    if approval.escalated_at is not None:
        people += [p for p in connector.escalation_approvers if p not in people]
    return people


def refusal(connector: FeishuConnector, approval: Approval, clicker: str, choice: str) -> Refusal | None:
    if not connector.enabled:
        return Refusal("connector disabled", "This connector is disabled: nothing is decided.")
    if clicker not in approvers_for(connector, approval):
        return Refusal("not an approver", "You are not allowed to approve commands here.")
    if choice == "approve" and clicker == approval.requested_by_open_id and not connector.allow_self_approval:
        return Refusal(
            "self approval",
            "You asked for this command, so another approver must approve it (four-eyes rule).",
        )
    return None


def delivery_of(connector: FeishuConnector | None) -> Delivery:
    mode = connector.approval_delivery if connector is not None else "chat"
    return mode if mode in ("approvers", "both") else "chat"  # type: ignore[return-value]
