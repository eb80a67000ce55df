"""Who may decide an approval (four-eyes, escalation) and where its card goes (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from echocenter.approvals.policy import approvers_for, delivery_of, refusal
from echocenter.db.models import Approval, FeishuConnector

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _connector(**fields: object) -> FeishuConnector:
    values: dict[str, object] = {
        "enabled": True,
        "approvers": ["ou_alice", "ou_bob"],
        "escalation_approvers": ["ou_erin"],
        "allow_self_approval": False,
        "approval_delivery": "chat",
    }
    values.update(fields)
    return FeishuConnector(**values)


def _approval(escalated: bool = False) -> Approval:
    return Approval(requested_by_open_id="ou_alice", escalated_at=NOW if escalated else None)


@pytest.mark.parametrize(
    ("connector", "clicker", "choice", "reason"),
    [
        (_connector(), "ou_alice", "approve", "self approval"),
        (_connector(), "ou_alice", "reject", None),  # asking and then withdrawing is fine
        (_connector(allow_self_approval=True), "ou_alice", "approve", None),
        (_connector(), "ou_bob", "approve", None),
        (_connector(), "ou_erin", "approve", "not an approver"),  # not yet escalated
        (_connector(enabled=False), "ou_bob", "approve", "connector disabled"),
    ],
)
def test_who_may_decide(connector: FeishuConnector, clicker: str, choice: str, reason: str | None) -> None:
    refused = refusal(connector, _approval(), clicker, choice)
    assert (refused.reason if refused else None) == reason


def test_escalation_adds_its_approvers_once_escalated() -> None:
    assert approvers_for(_connector(), _approval()) == ["ou_alice", "ou_bob"]
    assert approvers_for(_connector(), _approval(escalated=True)) == ["ou_alice", "ou_bob", "ou_erin"]
    assert refusal(_connector(), _approval(escalated=True), "ou_erin", "approve") is None


@pytest.mark.parametrize(
    ("mode", "expected"), [("chat", "chat"), ("approvers", "approvers"), ("both", "both")]
)
def test_delivery_modes(mode: str, expected: str) -> None:
    assert delivery_of(_connector(approval_delivery=mode)) == expected
    assert delivery_of(None) == "chat"
