"""Argon2id password hashing, off the event loop and a few at a time.

A hash costs PASSWORD_HASH_MEMORY_KIB of memory and a tenth of a second of CPU by design, so concurrent hashes
are bounded by a semaphore (LOGIN_MAX_CONCURRENT_HASHES): excess callers wait up to LOGIN_HASH_WAIT_SECONDS,
then get 429 with Retry-After. Forty simultaneous logins then cost a few hashes' worth of memory, not forty.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from anyio import to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from echocenter.credential_rules import MIN_PASSWORD_LENGTH
from echocenter.errors import TooManyRequests

if TYPE_CHECKING:
    from echocenter.settings import Settings

__all__ = ["MIN_PASSWORD_LENGTH", "Passwords"]


@lru_cache(maxsize=4)
def _hasher_and_dummy(memory_kib: int, time_cost: int) -> tuple[PasswordHasher, str]:
    hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost)
    # Verified against when the username is unknown, so both cases take the same time.
    return hasher, hasher.hash("echocenter-timing-equaliser")


class Passwords:
    def __init__(
        self, *, memory_kib: int, time_cost: int, max_concurrent: int = 2, wait_seconds: float = 3.0
    ) -> None:
        self._hasher, self._dummy_hash = _hasher_and_dummy(memory_kib, time_cost)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._wait_seconds = wait_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            memory_kib=settings.password_hash_memory_kib,
            time_cost=settings.password_hash_time_cost,
            max_concurrent=settings.login_max_concurrent_hashes,
            wait_seconds=settings.login_hash_wait_seconds,
        )

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise TooManyRequests(
                "the server is busy checking passwords: try again shortly",
                retry_after=math.ceil(self._wait_seconds),
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def hash(self, password: str) -> str:
        async with self._slot():
            # Not abandoned on cancellation: the slot is held until the thread (and its memory) is done.
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

        async with self._slot():
            return await to_thread.run_sync(_verify)
