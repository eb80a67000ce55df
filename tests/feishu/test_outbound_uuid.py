"""The uuids of a long reply's parts: deterministic (a re-driven reply finds its first send), within Feishu's
50 characters, and distinct for distinct messages even when their ids share a long head."""

from __future__ import annotations

from echocenter.feishu.outbound import part_uuid_base


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
