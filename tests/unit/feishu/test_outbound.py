"""Replies cut to Feishu's size at line ends, and the uuids of a long reply's parts: deterministic (a
re-driven reply finds its first send), within Feishu's 50 characters, and distinct for distinct messages
even when their ids share a long head."""

from __future__ import annotations

from echocenter.feishu.outbound import part_uuid_base, split_text


def test_a_short_key_is_kept_as_it_is() -> None:
    assert part_uuid_base("reply-om_0123456789abcdef0123456789abcdef") == (
        "reply-om_0123456789abcdef0123456789abcdef"
    )


def test_long_keys_with_the_same_head_stay_distinct_and_short_enough() -> None:
    head = "reply-om_" + "x" * 40
    first, second = part_uuid_base(head + "1"), part_uuid_base(head + "2")
    assert first != second
    assert len(f"{first}-99") <= 50 and len(f"{second}-99") <= 50
    assert part_uuid_base(head + "1") == first  # the same message: the same uuids, every time


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
