from __future__ import annotations

import itertools

import pytest

from echocenter.approvals.states import FINAL, ApprovalStatus, IllegalTransition, transition
from echocenter.feishu.outbound import split_text

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
    for state in FINAL:
        assert all((state, target) not in LEGAL for target in S)


def test_short_text_is_one_piece() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("") == [""]


def test_long_text_is_split_at_line_ends_under_the_limit() -> None:
    lines = [f"line {i:05d} " + "é" * 40 + "\n" for i in range(3000)]
    text = "".join(lines)
    pieces = split_text(text, limit=10_000)
    assert "".join(pieces) == text  # nothing lost, nothing added
    assert all(len(p.encode()) <= 10_000 for p in pieces)
    assert all(p.endswith("\n") for p in pieces)  # cut between lines
    assert len(pieces) > 1


def test_a_single_huge_line_is_cut_without_breaking_characters() -> None:
    text = "日本" * 10_000
    pieces = split_text(text, limit=1000)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 1000 for p in pieces)
