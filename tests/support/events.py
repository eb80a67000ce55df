"""Feishu message events for tests: typed (``message``) for the pure parts, and as the raw
``im.message.receive_v1`` payload Feishu sends (``receive_v1``, parsed by ``dm``) for the pipeline."""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any

from echocenter.feishu.events import Mention, MessageEvent, UserIds, parse_event

BOT = "ou_bot"
ALICE = UserIds("ou_alice", "alice", "on_alice")


def message(
    text: str = "@_user_1 hello", *, chat_type: str = "group", mention_bot: bool = True, **overrides: object
) -> MessageEvent:
    """A text message from Alice in a group chat, mentioning the bot unless told otherwise."""
    mentions = (Mention("@_user_1", UserIds(BOT), "Bot"),) if mention_bot else ()
    event = MessageEvent(
        event_id="e1",
        app_id="cli_x",
        token="",
        message_id="om_1",
        chat_id="oc_ops",
        chat_type=chat_type,
        message_type="text",
        content=json.dumps({"text": text}),
        sender=ALICE,
        sender_type="user",
        mentions=mentions,
    )
    return replace(event, **overrides)  # type: ignore[arg-type]


def receive_v1(
    text: str = "hello", *, sender: str = "ou_alice", message_id: str | None = None, **message: Any
) -> dict[str, Any]:
    """A direct message as ``im.message.receive_v1`` carries it; ``message`` overrides its message fields."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": secrets.token_hex(8),
            "event_type": "im.message.receive_v1",
            "app_id": "cli_x",
            "token": "verification-token",
        },
        "event": {
            "sender": {
                "sender_id": {"open_id": sender, "user_id": "", "union_id": ""},
                "sender_type": "user",
            },
            "message": {
                "message_id": message_id or "om_" + secrets.token_hex(8),
                "chat_id": "oc_dm_" + sender,
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
                "create_time": "0",
            }
            | message,
        },
    }


def dm(text: str = "hello", *, sender: str = "ou_alice", message_id: str | None = None) -> MessageEvent:
    """A direct message, parsed from the payload Feishu sends."""
    event = parse_event(receive_v1(text, sender=sender, message_id=message_id))
    assert isinstance(event, MessageEvent)
    return event
