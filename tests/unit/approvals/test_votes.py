"""A vote's note: trimmed, bounded, and absent when it is not text."""

from __future__ import annotations

from echocenter.approvals.votes import clean_note


def test_notes_are_trimmed_and_bounded() -> None:
    assert clean_note("  not   now \n please ") == "not now please"
    assert clean_note("") is None and clean_note(None) is None and clean_note(42) is None
    assert clean_note("x" * 900) == "x" * 500
