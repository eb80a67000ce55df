"""The HTTP callback's AES-256-CBC body and X-Lark-Signature, checked against Feishu's published example."""

from __future__ import annotations

import base64
import hashlib

import pytest

from echocenter.feishu.callback_crypto import (
    CallbackCryptoError,
    decrypt,
    encrypt,
    signature,
    signature_matches,
)

KEY = "test key"


def test_feishus_documented_example_decrypts() -> None:
    # From Feishu's "encrypt key" documentation: the same key and blob any SDK must read.
    assert decrypt("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=", KEY) == b"hello world"


@pytest.mark.parametrize("plaintext", [b"", b"x", b"{}" * 8, "事件".encode() * 100])
def test_what_is_encrypted_decrypts_to_the_same_bytes(plaintext: bytes) -> None:
    assert decrypt(encrypt(plaintext, KEY), KEY) == plaintext


def test_each_encryption_has_its_own_iv() -> None:
    assert encrypt(b"same", KEY) != encrypt(b"same", KEY)


@pytest.mark.parametrize(
    ("blob", "error"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"\0" * 16).decode(), "wrong length"),  # an IV and nothing after it
        (base64.b64encode(b"\0" * 40).decode(), "wrong length"),  # not whole AES blocks
    ],
)
def test_a_malformed_blob_is_refused_with_its_reason(blob: str, error: str) -> None:
    with pytest.raises(CallbackCryptoError, match=error):
        decrypt(blob, KEY)


def test_another_key_cannot_read_it() -> None:
    # A wrong key almost always leaves invalid padding; a rare valid-looking padding still is not the text.
    blob = encrypt(b'{"challenge": "c"}', KEY)
    try:
        assert decrypt(blob, "another key") != b'{"challenge": "c"}'
    except CallbackCryptoError as exc:
        assert "wrong encrypt key" in str(exc)


def test_the_signature_is_sha256_of_timestamp_nonce_key_and_body() -> None:
    body = b'{"encrypt": "..."}'
    expected = hashlib.sha256(b"1700000000" + b"nonce-1" + KEY.encode() + body).hexdigest()
    assert signature("1700000000", "nonce-1", KEY, body) == expected
    assert signature_matches(expected.upper(), "1700000000", "nonce-1", KEY, body)  # hex in any case


@pytest.mark.parametrize(
    ("timestamp", "nonce", "key", "body"),
    [
        ("1700000001", "nonce-1", KEY, b"{}"),
        ("1700000000", "nonce-2", KEY, b"{}"),
        ("1700000000", "nonce-1", "other key", b"{}"),
        ("1700000000", "nonce-1", KEY, b"{ }"),
    ],
)
def test_a_signature_of_anything_else_fails(timestamp: str, nonce: str, key: str, body: bytes) -> None:
    given = signature("1700000000", "nonce-1", KEY, b"{}")
    assert not signature_matches(given, timestamp, nonce, key, body)
