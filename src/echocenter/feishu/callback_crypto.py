"""Feishu HTTP-callback cryptography: AES-256-CBC bodies and the X-Lark-Signature check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from echocenter.errors import MalformedData


class CallbackCryptoError(MalformedData):
    """An encrypted callback body that is not base64, has the wrong length or does not decrypt."""


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode()).digest()


def encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """base64(iv ‖ AES-256-CBC(PKCS#7(plaintext))), key = SHA-256(encrypt_key)."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(blob: str, encrypt_key: str) -> bytes:
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError as exc:
        raise CallbackCryptoError("encrypt is not base64") from exc
    if len(raw) < 32 or len(raw) % 16:
        raise CallbackCryptoError("encrypt has the wrong length")
    decryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise CallbackCryptoError("cannot decrypt: wrong encrypt key?") from exc


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def signature_matches(given: str, timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> bool:
    return hmac.compare_digest(given.lower(), signature(timestamp, nonce, encrypt_key, body))
