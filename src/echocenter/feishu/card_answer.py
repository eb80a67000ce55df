"""A card callback is answered within Feishu's deadline, whatever its handler does.

Feishu shows the user an error when a click is not answered in time (3 s) or not answered at all, so the
answer — in the long connection's ack or in the HTTP callback's response — is the handler's result when it
comes within the deadline (FEISHU_CARD_DEADLINE), and a toast otherwise. A late handler is cancelled: one
whose work must outlive the answer shields it, and learns from the cancellation that its answer was dropped
(the approval workflow then updates the card itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ["CARD_FAILED_TOAST", "CARD_TIMEOUT_TOAST", "answer_within"]

log = logging.getLogger(__name__)

CARD_TIMEOUT_TOAST = {
    "toast": {"type": "warning", "content": "Still working on it — please check back shortly."}
}
CARD_FAILED_TOAST = {"toast": {"type": "error", "content": "Something went wrong."}}


async def answer_within(answer: Awaitable[dict[str, Any] | None], deadline: float) -> dict[str, Any]:
    """The handler's answer (at least ``{}``), or a toast when it is late or fails."""
    try:
        result = await asyncio.wait_for(answer, timeout=deadline)
    except TimeoutError:
        log.warning("card_deadline_passed")
        return CARD_TIMEOUT_TOAST
    except Exception:
        log.exception("card_handler_failed")
        return CARD_FAILED_TOAST
    return result if result is not None else {}
