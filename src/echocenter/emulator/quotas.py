"""Feishu's documented send quotas, enforced the strict way: at most N requests in ANY window of the given
length (a sliding log), so a client that paces itself correctly never meets them, and one that bursts does.

Message create/reply: 5/s per chat (shared by every bot in it), 50/s and 1000/min per app.
Message PATCH: 5/s per message. Refusals are counted by quota name.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    quota: str  # "app_per_second" | "app_per_minute" | "chat_per_second" | "message_patch_per_second"
    limit: int
    reset_seconds: int  # whole seconds until a request would be accepted again (at least 1)


class SlidingLog:
    """Time stamps of accepted requests per key; a request is accepted while fewer than ``limit`` of them
    lie in the last ``window`` seconds."""

    def __init__(self) -> None:
        self._log: dict[str, deque[float]] = {}

    def wait_needed(self, key: str, limit: int, window: float, now: float) -> float:
        """0 when one more request fits now, else the seconds until it would."""
        entries = self._log.get(key)
        if not entries:
            return 0.0
        while entries and entries[0] <= now - window:
            entries.popleft()
        if len(entries) < limit:
            return 0.0
        return entries[len(entries) - limit] + window - now

    def add(self, key: str, now: float) -> None:
        self._log.setdefault(key, deque()).append(now)


class Quotas:
    def __init__(self) -> None:
        self._log = SlidingLog()
        self.refusals: Counter[str] = Counter()

    def reset(self) -> None:
        self._log = SlidingLog()
        self.refusals.clear()

    def _check(self, checks: list[tuple[str, str, int, float]]) -> Refusal | None:
        """All quotas or none: a refused request consumes nothing."""
        now = time.monotonic()
        for quota, key, limit, window in checks:
            if limit <= 0:
                continue
            wait = self._log.wait_needed(key, limit, window, now)
            if wait > 0:
                self.refusals[quota] += 1
                return Refusal(quota, limit, max(1, int(wait + 0.999)))
        for _quota, key, limit, _window in checks:
            if limit > 0:
                self._log.add(key, now)
        return None

    def send(
        self, *, app_id: str, chat_id: str, per_chat: int, per_app_second: int, per_app_minute: int
    ) -> Refusal | None:
        return self._check(
            [
                ("app_per_second", f"app-s:{app_id}", per_app_second, 1.0),
                ("app_per_minute", f"app-m:{app_id}", per_app_minute, 60.0),
                ("chat_per_second", f"chat:{chat_id}", per_chat, 1.0),
            ]
        )

    def patch(self, *, message_id: str, per_message: int) -> Refusal | None:
        return self._check([("message_patch_per_second", f"patch:{message_id}", per_message, 1.0)])
