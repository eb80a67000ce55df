"""Pure rules of issue 12: who may decide (four-eyes, escalation), where cards go, the timeline's hash and
CSV cells that a spreadsheet will not run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from echocenter.approvals.export import _cell
from echocenter.approvals.policy import approvers_for, delivery_of, refusal
from echocenter.approvals.timeline import GENESIS, canonical, chain_hash
from echocenter.approvals.votes import clean_note
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


def test_the_hash_covers_every_field_and_the_previous_hash() -> None:
    base = {
        "approval_id": 1,
        "kind": "vote",
        "actor": "ou_bob",
        "actor_name": "Bob",
        "detail": {"decision": "approve", "note": "ok"},
        "created_at": NOW,
    }
    original = chain_hash(GENESIS, canonical(**base))  # type: ignore[arg-type]
    assert original == chain_hash(GENESIS, canonical(**base))  # type: ignore[arg-type]
    changes: list[dict[str, object]] = [
        {"approval_id": 2},
        {"kind": "decided"},
        {"actor": "ou_carol"},
        {"actor_name": "Carol"},
        {"detail": {"decision": "approve", "note": "ok!"}},
        {"created_at": NOW + timedelta(microseconds=1)},
    ]
    for change in changes:
        assert chain_hash(GENESIS, canonical(**{**base, **change})) != original, change  # type: ignore[arg-type]
    assert chain_hash("1" * 64, canonical(**base)) != original  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-rf", "'-rf"),
        ("@SUM", "'@SUM"),
        ("uptime", "uptime"),
        (None, ""),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, cell: str) -> None:
    assert _cell(value) == cell


def test_notes_are_trimmed_and_bounded() -> None:
    assert clean_note("  not   now \n please ") == "not now please"
    assert clean_note("") is None and clean_note(None) is None and clean_note(42) is None
    assert clean_note("x" * 900) == "x" * 500
