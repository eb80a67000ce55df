"""The approval state machine: only the drawn transitions, and final states are final."""

from __future__ import annotations

import itertools

import pytest

from echocenter.approvals.states import FINAL, ApprovalStatus, IllegalTransition, transition

S = ApprovalStatus
LEGAL = {
    (S.PENDING, S.APPROVED),
    (S.PENDING, S.REJECTED),
    (S.PENDING, S.EXPIRED),
    (S.APPROVED, S.EXECUTED),
    (S.APPROVED, S.FAILED),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
def test_only_the_drawn_transitions_are_allowed(source: ApprovalStatus, target: ApprovalStatus) -> None:
    if (source, target) in LEGAL:
        assert transition(source, target) is target
    else:
        with pytest.raises(IllegalTransition):
            transition(source, target)


def test_final_states_have_no_way_out() -> None:
    """FINAL (what the agent loop waits for) is exactly the states the transition function lets nothing
    leave: a final state with a way out, or a dead end missing from FINAL, fails here."""

    def has_a_way_out(source: ApprovalStatus) -> bool:
        for target in S:
            try:
                transition(source, target)
            except IllegalTransition:
                continue
            return True
        return False

    assert {state for state in S if not has_a_way_out(state)} == FINAL
