"""The inbound pipeline, top to bottom as the seed has it:

connector enabled → dedup by message_id → policy filters → text normalisation / prefix → rate limit → Butler.

Every stop but a duplicate leaves a ``ws_filtered`` entry with its reason; a routed message leaves
``ws_routed``. The same pipeline serves the long connection and the HTTP callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.butler.interface import Butler, InboundMessage
from echocenter.db.models import FeishuConnector, InboundStatus, LogLevel
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.types import utcnow
from echocenter.feishu.events import MessageEvent
from echocenter.feishu.policy import Allowed, FilterReason, PolicySettings, evaluate
from echocenter.integration_logs.service import LogAction, record

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)
TEXT_PREVIEW_CHARS = 200


class Outcome(StrEnum):
    ROUTED = "routed"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    UNKNOWN_CONNECTOR = "unknown_connector"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    reason: FilterReason | None = None


def policy_of(connector: FeishuConnector) -> PolicySettings:
    return PolicySettings(
        allow_dm=connector.allow_dm,
        allow_group_mention=connector.allow_group_mention,
        mention_required=connector.mention_required,
        allowed_chat_ids=frozenset(connector.allowed_chat_ids),
        user_whitelist=frozenset(connector.user_whitelist),
        ignore_bot_messages=connector.ignore_bot_messages,
        prefix_command=connector.prefix_command,
    )


def _where(event: MessageEvent) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "chat_id": event.chat_id,
        "chat_type": event.chat_type,
        "sender_open_id": event.sender.open_id,
    }


async def _claim(session: AsyncSession, connector_id: int, event: MessageEvent) -> InboundRow | None:
    """Mark the message as seen; None when it was seen before (here or on another instance)."""
    row = InboundRow(
        connector_id=connector_id,
        message_id=event.message_id,
        sender_open_id=event.sender.open_id,
        chat_id=event.chat_id,
        status=InboundStatus.RECEIVED.value,
        received_at=utcnow(),
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return row


async def _routed_recently(session: AsyncSession, connector_id: int, sender_open_id: str) -> int:
    since = utcnow() - RATE_WINDOW
    query = select(func.count()).where(
        InboundRow.connector_id == connector_id,
        InboundRow.sender_open_id == sender_open_id,
        InboundRow.status == InboundStatus.ROUTED.value,
        InboundRow.received_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def _filter(
    session: AsyncSession, row: InboundRow, event: MessageEvent, reason: FilterReason, **detail: Any
) -> Result:
    row.status = InboundStatus.FILTERED.value
    record(
        session,
        connector_id=row.connector_id,
        action=LogAction.WS_FILTERED,
        reason=reason.value,
        **_where(event),
        **detail,
    )
    await session.commit()
    return Result(Outcome.FILTERED, reason)


async def process_message(
    sessions: async_sessionmaker[AsyncSession],
    *,
    connector_id: int,
    event: MessageEvent,
    bot_open_id: str | None,
    butler: Butler,
    transport: str,
) -> Result:
    async with sessions() as session:
        connector = await session.get(FeishuConnector, connector_id)
        if connector is None:
            return Result(Outcome.UNKNOWN_CONNECTOR)
        if not connector.enabled:
            record(
                session,
                connector_id=connector_id,
                action=LogAction.WS_FILTERED,
                reason=FilterReason.CONNECTOR_DISABLED.value,
                **_where(event),
            )
            await session.commit()
            return Result(Outcome.FILTERED, FilterReason.CONNECTOR_DISABLED)
        policy, rate_limit = policy_of(connector), connector.rate_limit_per_minute

        row = await _claim(session, connector_id, event)
        if row is None:
            return Result(Outcome.DUPLICATE, FilterReason.DUPLICATE)  # silent, as the seed has it

        decision = evaluate(policy, event, bot_open_id)
        if not isinstance(decision, Allowed):
            return await _filter(session, row, event, decision.reason)
        if await _routed_recently(session, connector_id, event.sender.open_id) >= rate_limit:
            return await _filter(session, row, event, FilterReason.RATE_LIMITED, limit_per_minute=rate_limit)

        message = InboundMessage(
            connector_id=connector_id,
            event_id=event.event_id,
            message_id=event.message_id,
            text=decision.text,
            open_id=event.sender.open_id,
            user_id=event.sender.user_id,
            union_id=event.sender.union_id,
            chat_id=event.chat_id,
            chat_type=event.chat_type,
            root_id=event.root_id,
            parent_id=event.parent_id,
            thread_id=event.thread_id,
        )
        try:
            await butler.handle(message)
        except Exception as exc:
            # Not taken: forget the message, so Feishu's redelivery of it is not mistaken for a duplicate.
            log.exception("butler_handle_failed")
            await session.execute(delete(InboundRow).where(InboundRow.id == row.id))
            record(
                session,
                connector_id=connector_id,
                action=LogAction.WS_CLIENT_ERROR,
                level=LogLevel.ERROR,
                error="routing to the Butler failed; the message may be delivered again",
                exception=type(exc).__name__,
                **_where(event),
            )
            await session.commit()
            return Result(Outcome.FAILED)

        await session.execute(
            update(InboundRow).where(InboundRow.id == row.id).values(status=InboundStatus.ROUTED.value)
        )
        record(
            session,
            connector_id=connector_id,
            action=LogAction.WS_ROUTED,
            transport=transport,
            text=decision.text[:TEXT_PREVIEW_CHARS],
            **_where(event),
        )
        await session.commit()
        return Result(Outcome.ROUTED)


async def prune_seen_messages(session: AsyncSession, *, max_age: timedelta) -> int:
    result = await session.execute(delete(InboundRow).where(InboundRow.received_at < utcnow() - max_age))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
