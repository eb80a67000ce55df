"""A NUL anywhere in a Feishu event is read as U+FFFD (PostgreSQL text cannot store it)."""

from __future__ import annotations

import json

from echocenter.feishu.events import MessageEvent, parse_event


def _event(text: str, open_id: str = "ou_alice") -> dict[str, object]:
    return {
        "schema": "2.0",
        "header": {"event_type": "im.message.receive_v1", "event_id": "ev_1"},
        "event": {
            "sender": {"sender_id": {"open_id": open_id}, "sender_type": "user"},
            "message": {"message_id": "om_1", "chat_id": "oc_1", "content": json.dumps({"text": text})},
        },
    }


def test_nul_in_the_content_and_in_ids_becomes_the_replacement_character() -> None:
    body = _event("a\u0000b", open_id="ou_\u0000")
    for payload in (json.dumps(body).encode(), json.dumps(body), body):
        event = parse_event(payload)
        assert isinstance(event, MessageEvent)
        assert json.loads(event.content)["text"] == "a\ufffdb"
        assert event.sender.open_id == "ou_\ufffd"


def test_other_text_is_read_unchanged_and_a_typed_escape_only_changes_its_digits() -> None:
    assert json.loads(parse_event(_event("plain text")).content)["text"] == "plain text"  # type: ignore[union-attr]
    # A person who types the six characters backslash-u-0-0-0-0 sees backslash-u-f-f-f-d: harmless, and
    # simpler than telling an escaped backslash apart in every nested string.
    body = _event("plain \\u0000 text, escaped by the person")
    event = parse_event(json.dumps(body).encode())
    assert isinstance(event, MessageEvent)
    assert json.loads(event.content)["text"] == "plain \\u0000 text, escaped by the person".replace(
        "\\u0000", "\\ufffd"
    )
