"""Typed inbound events, built the same way from the long connection and the HTTP callback (a card click
and the identities in it are contract types: contracts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from echocenter.contracts import CardActionEvent, UserIds
from echocenter.errors import MalformedData


class EventParseError(MalformedData):
    """A payload that is not a Feishu event we can read."""


@dataclass(frozen=True, slots=True)
class Mention:
    key: str
    ids: UserIds
    name: str


@dataclass(frozen=True, slots=True)
class MessageEvent:
    event_id: str
    app_id: str
    token: str
    message_id: str
    chat_id: str
    chat_type: str  # "p2p" | "group"
    message_type: str
    content: str  # JSON string, as Feishu sends it
    sender: UserIds
    sender_type: str  # "user" | "app" | "bot"
    mentions: tuple[Mention, ...] = ()
    root_id: str = ""
    parent_id: str = ""
    thread_id: str = ""
    create_time: str = ""


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type EchoCenter does not act on; logged and acked."""

    event_id: str
    app_id: str
    token: str
    event_type: str
    raw: dict[str, Any] = field(default_factory=dict)


Event = MessageEvent | CardActionEvent | OtherEvent


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


_NUL_ESCAPE = "\\u0000"


def _without_nul(text: str) -> str:
    """NUL can be neither stored in PostgreSQL text nor shown: it becomes U+FFFD wherever it hides — as a
    character, as a JSON escape, or double-escaped inside ``message.content`` (itself a JSON string). Without
    this a message with a NUL could never be claimed, so it would be refused and pushed again for ever."""
    if _NUL_ESCAPE in text or "\x00" in text:
        return text.replace(_NUL_ESCAPE, "\\ufffd").replace("\x00", "\ufffd")
    return text


def parse_event(payload: bytes | str | dict[str, Any]) -> Event:
    """Read a schema 2.0 event (or a v1 envelope). Raises EventParseError for anything unreadable."""
    try:
        if isinstance(payload, dict):
            dumped = json.dumps(payload, ensure_ascii=False)
            body = json.loads(_without_nul(dumped)) if "\x00" in dumped or _NUL_ESCAPE in dumped else payload
        else:
            # Decoding first spares json the work of guessing the encoding of bytes.
            body = json.loads(_without_nul(payload.decode() if isinstance(payload, bytes) else payload))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EventParseError("event payload is not JSON") from exc
    if not isinstance(body, dict):
        raise EventParseError("event payload is not a JSON object")
    header = body.get("header")
    if isinstance(header, dict):  # schema 2.0
        event_type, event_id = _str(header, "event_type"), _str(header, "event_id")
        app_id, token = _str(header, "app_id"), _str(header, "token")
    else:  # v1: {"uuid", "token", "event": {"type", ...}}
        inner = _dict(body.get("event"))
        event_type, event_id = _str(inner, "type"), _str(body, "uuid")
        app_id, token = _str(inner, "app_id"), _str(body, "token")
    event = body.get("event")
    if not isinstance(event, dict):
        raise EventParseError("event payload has no event object")
    if event_type == "im.message.receive_v1":
        return _message(event, event_id, app_id, token)
    if event_type == "card.action.trigger":
        return _card_action(event, event_id, app_id, token)
    return OtherEvent(event_id, app_id, token, event_type, body)


def _message(event: dict[str, Any], event_id: str, app_id: str, token: str) -> MessageEvent:
    message, sender = event.get("message"), event.get("sender")
    if not isinstance(message, dict) or not isinstance(sender, dict):
        raise EventParseError("im.message.receive_v1 without message or sender")
    message_id = _str(message, "message_id")
    if not message_id:
        raise EventParseError("im.message.receive_v1 without message_id")
    mentions = []
    for item in message.get("mentions") or []:
        if isinstance(item, dict):
            mentions.append(Mention(_str(item, "key"), UserIds.parse(item.get("id")), _str(item, "name")))
    return MessageEvent(
        event_id=event_id,
        app_id=app_id,
        token=token,
        message_id=message_id,
        chat_id=_str(message, "chat_id"),
        chat_type=_str(message, "chat_type"),
        message_type=_str(message, "message_type"),
        content=_str(message, "content"),
        sender=UserIds.parse(sender.get("sender_id")),
        sender_type=_str(sender, "sender_type"),
        mentions=tuple(mentions),
        root_id=_str(message, "root_id"),
        parent_id=_str(message, "parent_id"),
        thread_id=_str(message, "thread_id"),
        create_time=_str(message, "create_time"),
    )


def _card_action(event: dict[str, Any], event_id: str, app_id: str, token: str) -> CardActionEvent:
    action = event.get("action")
    if not isinstance(action, dict):
        raise EventParseError("card.action.trigger without action")
    value = action.get("value")
    if isinstance(value, str):  # some clients send the value as a JSON string
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            value = {"value": value}
    context = _dict(event.get("context"))
    form_value = action.get("form_value")
    return CardActionEvent(
        event_id=event_id,
        app_id=app_id,
        token=token,
        operator=UserIds.parse(event.get("operator")),
        value=value if isinstance(value, dict) else {},
        tag=_str(action, "tag"),
        form_value=form_value if isinstance(form_value, dict) else None,
        card_token=_str(event, "token"),
        open_message_id=_str(context, "open_message_id"),
        open_chat_id=_str(context, "open_chat_id"),
    )
