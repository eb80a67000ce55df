"""How Feishu shapes an HTTP callback request: encrypted body and X-Lark-* signature headers."""

from __future__ import annotations

import json
import secrets
import time

from echocenter.feishu import callback_crypto


def webhook_request(payload: bytes, encrypt_key: str) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if not encrypt_key:
        return payload, headers
    body = json.dumps({"encrypt": callback_crypto.encrypt(payload, encrypt_key)}).encode()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    headers.update(
        {
            "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": callback_crypto.signature(timestamp, nonce, encrypt_key, body),
        }
    )
    return body, headers
