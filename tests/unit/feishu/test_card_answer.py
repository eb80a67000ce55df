"""answer_within: a card click always gets an answer inside the deadline."""

from __future__ import annotations

import asyncio
from typing import Any

from echocenter.feishu.card_answer import CARD_FAILED_TOAST, CARD_TIMEOUT_TOAST, answer_within


async def test_the_handlers_answer_when_it_is_in_time() -> None:
    async def handler() -> dict[str, Any]:
        return {"toast": {"type": "success", "content": "Approved"}}

    assert await answer_within(handler(), 1.0) == {"toast": {"type": "success", "content": "Approved"}}


async def test_no_answer_is_still_an_answer() -> None:
    async def handler() -> None:
        return None

    assert await answer_within(handler(), 1.0) == {}


async def test_a_late_handler_is_cancelled_and_answered_with_a_toast() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()  # how the approval workflow learns its answer was dropped
            raise
        return {}

    assert await answer_within(slow(), 0.01) == CARD_TIMEOUT_TOAST
    assert started.is_set() and cancelled.is_set()


async def test_a_failing_handler_is_answered_with_an_error_toast() -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("database away")

    assert await answer_within(broken(), 1.0) == CARD_FAILED_TOAST
