"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under SECRETS_KEY.

SECRETS_KEY may list several keys separated by commas: the first encrypts, all decrypt, so a key can be
rotated without losing stored secrets.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Show the last characters of a secret only when it is long enough that they give nothing away.
_HINT_MIN_LENGTH = 16
_HINT_CHARS = 4
MASK = "********"


class SecretBox:
    def __init__(self, keys: str) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
        except (ValueError, TypeError) as exc:
            raise ValueError("SECRETS_KEY must be one or more comma-separated Fernet keys") from exc

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a stored secret cannot be decrypted with SECRETS_KEY") from exc


def secret_hint(value: str) -> str | None:
    return value[-_HINT_CHARS:] if len(value) >= _HINT_MIN_LENGTH else None


def mask(has_value: bool, hint: str | None) -> str | None:
    if not has_value:
        return None
    return MASK + (hint or "")
