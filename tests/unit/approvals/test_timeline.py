"""The approval timeline's hash chain: every field and the previous hash are covered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from echocenter.approvals.timeline import GENESIS, canonical, chain_hash

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


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
