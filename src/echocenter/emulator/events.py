"""Event payloads exactly as Feishu shapes them (schema 2.0 envelope, real field names)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from echocenter.emulator.state import App, Chat, Message, User, now_ms


def envelope(app: App, event_type: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "token": app.verification_token,
            "create_time": str(now_ms()),
            "event_type": event_type,
            "tenant_key": app.tenant_key,
            "app_id": app.app_id,
        },
        "event": event,
    }


def _ids(user: User) -> dict[str, str]:
    return {"union_id": user.union_id, "user_id": user.user_id, "open_id": user.open_id}


def mention(key: str, user: User, tenant_key: str) -> dict[str, Any]:
    return {"key": key, "id": _ids(user), "name": user.name, "tenant_key": tenant_key}


def text_with_mentions(text: str, mentioned: list[User], tenant_key: str) -> tuple[str, list[dict[str, Any]]]:
    """Feishu puts an ``@_user_N`` placeholder in the text for each mention, in order, before the text."""
    mentions = [mention(f"@_user_{i}", user, tenant_key) for i, user in enumerate(mentioned, start=1)]
    prefix = " ".join(m["key"] for m in mentions)
    return (f"{prefix} {text}" if prefix else text), mentions


def message_receive(app: App, sender: User, chat: Chat, message: Message) -> dict[str, Any]:
    return envelope(
        app,
        "im.message.receive_v1",
        {
            "sender": {
                "sender_id": _ids(sender),
                "sender_type": "app" if sender.is_bot else "user",
                "tenant_key": app.tenant_key,
            },
            "message": {
                "message_id": message.message_id,
                "root_id": message.root_id,
                "parent_id": message.parent_id,
                "create_time": str(message.create_time),
                "update_time": str(message.create_time),
                "chat_id": chat.chat_id,
                "thread_id": message.thread_id,
                "chat_type": chat.chat_type,
                "message_type": message.msg_type,
                "content": message.content,
                "mentions": message.mentions,
                "user_agent": "EchoCenter-Emulator",
            },
        },
    )


def card_action(
    app: App,
    operator: User,
    message: Message,
    *,
    value: dict[str, Any],
    tag: str,
    name: str | None,
    form_value: dict[str, Any] | None,
    card_token: str,
) -> dict[str, Any]:
    action: dict[str, Any] = {"value": value, "tag": tag}
    if name:
        action["name"] = name
    if form_value is not None:
        action["form_value"] = form_value
    return envelope(
        app,
        "card.action.trigger",
        {
            "operator": {"tenant_key": app.tenant_key, **_ids(operator)},
            "token": card_token,
            "action": action,
            "host": "im_message",
            "context": {"open_message_id": message.message_id, "open_chat_id": message.chat_id},
        },
    )


def _nodes(card: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """Every element with this tag (1.0 ``elements`` or 2.0 ``body.elements``, forms included), in order."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") == tag:
                found.append(node)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(card.get("elements", []))
    walk(card.get("body", {}))
    return found


def card_buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every button of a card, in reading order."""
    return _nodes(card, "button")


def card_inputs(card: dict[str, Any]) -> list[str]:
    """The names of a card's input fields (those a form submits)."""
    return [n["name"] for n in _nodes(card, "input") if isinstance(n.get("name"), str)]


def button_text(button: dict[str, Any]) -> str:
    text = button.get("text", {})
    return str(text.get("content", "")) if isinstance(text, dict) else str(text)


def parse_card(content: str) -> dict[str, Any]:
    card = json.loads(content)
    if not isinstance(card, dict):
        raise ValueError("a card is a JSON object")
    return card
