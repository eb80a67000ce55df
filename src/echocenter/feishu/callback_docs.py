"""OpenAPI description of Feishu's HTTP callback bodies (the route reads the raw bytes itself: it must check
``X-Lark-Signature`` over them before trusting any of it, so no FastAPI body model can stand in front)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPERATION"]

_ENCRYPTED = {
    "title": "Encrypted callback",
    "type": "object",
    "description": "With an encrypt key: base64(iv ‖ AES-256-CBC ciphertext) of one of the other bodies.",
    "properties": {"encrypt": {"type": "string"}},
    "required": ["encrypt"],
}
_URL_VERIFICATION = {
    "title": "URL verification",
    "type": "object",
    "properties": {
        "type": {"const": "url_verification"},
        "challenge": {"type": "string"},
        "token": {"type": "string", "description": "the connector's verification token"},
    },
    "required": ["type", "challenge"],
}
_EVENT = {
    "title": "Event (schema 2.0)",
    "type": "object",
    "description": "im.message.receive_v1, card.action.trigger, …",
    "properties": {
        "schema": {"const": "2.0"},
        "header": {
            "type": "object",
            "properties": {
                "event_id": {"type": "string"},
                "event_type": {"type": "string"},
                "create_time": {"type": "string"},
                "token": {"type": "string"},
                "app_id": {"type": "string"},
                "tenant_key": {"type": "string"},
            },
        },
        "event": {"type": "object"},
    },
    "required": ["schema", "header", "event"],
}
_SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Checked when the connector has an encrypt key: hex(sha256(timestamp + nonce + "
        "encrypt_key + raw body))"
        if name == "X-Lark-Signature"
        else "Part of the signed string",
    }
    for name in ("X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce")
]

OPERATION: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"anyOf": [_ENCRYPTED, _URL_VERIFICATION, _EVENT]}}},
    },
    "parameters": _SIGNATURE_HEADERS,
    "responses": {
        "200": {
            "description": '`{"challenge"}` for a URL verification, a card answer (toast and/or card) for a '
            "card action, `{}` for any other event",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
}
