"""One call of the brain, the same for the rule path and every turn of the agent loop: its latency measured,
and on failure the streaming card (if one is showing) stops typing and the error is logged as butler_error."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter import metrics
from echocenter.butler.brains import Brain, BrainContext, BrainError, BrainReply
from echocenter.contracts import InboundMessage
from echocenter.db.models import LogLevel
from echocenter.feishu.streaming import CardStream
from echocenter.integration_logs.service import LogAction, record_now


async def think(
    brain: Brain,
    context: BrainContext,
    *,
    stream: CardStream | None,
    sessions: async_sessionmaker[AsyncSession],
    message: InboundMessage,
    **detail: Any,
) -> BrainReply | None:
    """The brain's reply, or None when it failed (logged; the caller apologises). Anything but a BrainError
    propagates, after the card stopped typing."""
    started = time.monotonic()
    try:
        reply = await brain.respond(context)
    except BaseException as exc:  # the card (if one is showing) stops typing, whatever happened
        if stream is not None:
            await stream.abort()
        if not isinstance(exc, BrainError):
            raise
        await record_now(
            sessions,
            connector_id=message.connector_id,
            action=LogAction.BUTLER_ERROR,
            level=LogLevel.ERROR,
            error=str(exc),
            message_id=message.message_id,
            **detail,
        )
        return None
    metrics.BRAIN_LATENCY.observe(time.monotonic() - started)
    return reply
