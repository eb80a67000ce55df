"""parse_event: the typed events both transports build from Feishu's payloads, refusing what it cannot read; a
NUL anywhere in an event is read as U+FFFD (PostgreSQL text cannot store it)."""

from __future__ import annotations

import json

import pytest

from echocenter.feishu.events import (
    CardActionEvent,
    EventParseError,
    Mention,
    MessageEvent,
    OtherEvent,
    UserIds,
    parse_event,
)
from tests.support.events import receive_v1


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


# --- parse_event: the typed events both transports build -----------------------------------------------
def test_a_message_carries_every_field_feishu_sends() -> None:
    payload = receive_v1(
        "hi @_user_1",
        sender="ou_bob",
        message_id="om_42",
        chat_id="oc_ops",
        chat_type="group",
        root_id="om_root",
        parent_id="om_parent",
        thread_id="omt_1",
        create_time="1700000000000",
        mentions=[{"key": "@_user_1", "id": {"open_id": "ou_bot", "union_id": "on_bot"}, "name": "Bot"}],
    )
    event = parse_event(json.dumps(payload).encode())
    assert event == MessageEvent(
        event_id=payload["header"]["event_id"],
        app_id="cli_x",
        token="verification-token",
        message_id="om_42",
        chat_id="oc_ops",
        chat_type="group",
        message_type="text",
        content=json.dumps({"text": "hi @_user_1"}),
        sender=UserIds("ou_bob"),
        sender_type="user",
        mentions=(Mention("@_user_1", UserIds("ou_bot", "", "on_bot"), "Bot"),),
        root_id="om_root",
        parent_id="om_parent",
        thread_id="omt_1",
        create_time="1700000000000",
    )


def test_bytes_text_and_a_dict_are_read_alike() -> None:
    payload = receive_v1(message_id="om_1")
    events = {parse_event(p) for p in (payload, json.dumps(payload), json.dumps(payload).encode())}
    assert len(events) == 1


def test_a_v1_envelope_is_read_from_its_own_places() -> None:
    payload = {
        "uuid": "ev_v1",
        "token": "verification-token",
        "type": "event_callback",
        "event": {"type": "im.chat.member.bot.added_v1", "app_id": "cli_x"},
    }
    event = parse_event(payload)
    assert isinstance(event, OtherEvent)
    assert (event.event_id, event.app_id, event.token, event.event_type) == (
        "ev_v1",
        "cli_x",
        "verification-token",
        "im.chat.member.bot.added_v1",
    )


def _card_action(value: object) -> dict[str, object]:
    return {
        "schema": "2.0",
        "header": {"event_id": "ev_c", "event_type": "card.action.trigger", "app_id": "cli_x", "token": "t"},
        "event": {
            "operator": {"open_id": "ou_alice"},
            "token": "c-card-token",
            "action": {"tag": "button", "value": value, "form_value": {"note": "ok"}},
            "context": {"open_message_id": "om_card", "open_chat_id": "oc_ops"},
        },
    }


def test_a_card_click_carries_who_what_and_where() -> None:
    event = parse_event(_card_action({"approval_id": 7, "choice": "approve"}))
    assert event == CardActionEvent(
        event_id="ev_c",
        app_id="cli_x",
        token="t",
        operator=UserIds("ou_alice"),
        value={"approval_id": 7, "choice": "approve"},
        tag="button",
        form_value={"note": "ok"},
        card_token="c-card-token",
        open_message_id="om_card",
        open_chat_id="oc_ops",
    )


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (json.dumps({"approval_id": 7}), {"approval_id": 7}),  # some clients send the value as a JSON string
        ("plain", {"value": "plain"}),
        (["a", "list"], {}),
    ],
)
def test_a_card_value_in_another_shape_is_read_as_a_dict(value: object, read: dict[str, object]) -> None:
    event = parse_event(_card_action(value))
    assert isinstance(event, CardActionEvent) and event.value == read


def test_an_event_type_we_do_not_act_on_is_kept_whole() -> None:
    payload = {
        "schema": "2.0",
        "header": {"event_id": "ev_o", "event_type": "im.message.reaction.created_v1"},
        "event": {"reaction_type": {"emoji_type": "OK"}},
    }
    event = parse_event(payload)
    assert isinstance(event, OtherEvent)
    assert event.event_type == "im.message.reaction.created_v1" and event.raw == payload


def _without(path: tuple[str, ...]) -> dict[str, object]:
    payload = receive_v1()
    *parents, last = path
    node = payload
    for key in parents:
        node = node[key]
    del node[last]
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe not utf-8",
        "{broken",
        "[1, 2]",
        json.dumps({"schema": "2.0", "header": {"event_type": "im.message.receive_v1"}}),  # no event
        json.dumps(_without(("event", "message"))),
        json.dumps(_without(("event", "sender"))),
        json.dumps(_without(("event", "message", "message_id"))),
        json.dumps({"schema": "2.0", "header": {"event_type": "card.action.trigger"}, "event": {}}),
        "[" * 100_000 + "]" * 100_000,  # too deep for json: refused, not a crash
    ],
)
def test_an_unreadable_payload_is_an_event_parse_error(payload: bytes | str) -> None:
    with pytest.raises(EventParseError):
        parse_event(payload)
