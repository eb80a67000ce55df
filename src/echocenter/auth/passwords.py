"""Argon2id password hashing, off the event loop (a hash costs a tenth of a second of CPU by design)."""

from __future__ import annotations

from functools import lru_cache

from anyio import to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8


class Passwords:
    def __init__(self, *, memory_kib: int, time_cost: int) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost)
        # Verified against when the username is unknown, so both cases take the same time.
        self._dummy_hash = self._hasher.hash("echocenter-timing-equaliser")

    async def hash(self, password: str) -> str:
        return await to_thread.run_sync(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def _verify() -> bool:
            try:
                return (
                    self._hasher.verify(password_hash or self._dummy_hash, password)
                    and password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await to_thread.run_sync(_verify)


@lru_cache(maxsize=4)
def passwords_for(memory_kib: int, time_cost: int) -> Passwords:
    return Passwords(memory_kib=memory_kib, time_cost=time_cost)
