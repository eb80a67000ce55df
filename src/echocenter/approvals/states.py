"""The approval state machine, without storage:

PENDING ──approve──▶ APPROVED ──▶ EXECUTED
   │                    └───────▶ FAILED
   ├──reject───▶ REJECTED
   └──time─────▶ EXPIRED
"""

from __future__ import annotations

from enum import StrEnum

from echocenter.errors import EchoCenterError


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXECUTED = "EXECUTED"
    FAILED = "FAILED"


_ALLOWED = {
    ApprovalStatus.PENDING: frozenset(
        {ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED}
    ),
    ApprovalStatus.APPROVED: frozenset({ApprovalStatus.EXECUTED, ApprovalStatus.FAILED}),
}
FINAL = frozenset(
    {ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED, ApprovalStatus.EXECUTED, ApprovalStatus.FAILED}
)


class IllegalTransition(EchoCenterError, ValueError):
    """A move the machine refuses: a bug in the caller (decisions are conditional UPDATEs)."""


def transition(current: ApprovalStatus, target: ApprovalStatus) -> ApprovalStatus:
    """``target`` if the machine allows current → target; IllegalTransition otherwise."""
    if target not in _ALLOWED.get(current, frozenset()):
        raise IllegalTransition(f"an approval cannot go from {current} to {target}")
    return target
