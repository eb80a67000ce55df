"""The inbound pipeline, top to bottom as the seed has it:

connector enabled → dedup by message_id → policy filters → text normalisation / prefix → rate limit → Butler.

Every stop but a duplicate leaves a ``ws_filtered`` entry with its reason; a routed message leaves
``ws_routed``. The same pipeline serves the long connection and the HTTP callback.

This is the hot path of the service, so it speaks SQLAlchemy Core on a connection (two short transactions
per routed message, one per filtered one) rather than the ORM unit of work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from echocenter.butler.interface import Butler, InboundMessage
from echocenter.db.models import FeishuConnector, InboundStatus, IntegrationLog, LogLevel
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.types import utcnow
from echocenter.feishu.events import MessageEvent
from echocenter.feishu.policy import Allowed, FilterReason, PolicySettings, evaluate
from echocenter.integration_logs.service import LogAction, log_row

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)
TEXT_PREVIEW_CHARS = 200
_C = FeishuConnector
_SETTINGS_COLUMNS = (
    _C.enabled,
    _C.allow_dm,
    _C.allow_group_mention,
    _C.mention_required,
    _C.allowed_chat_ids,
    _C.user_whitelist,
    _C.ignore_bot_messages,
    _C.prefix_command,
    _C.rate_limit_per_minute,
)


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


def policy_of(settings: FeishuConnector | RowMapping) -> PolicySettings:
    def get(name: str) -> Any:
        return settings[name] if isinstance(settings, RowMapping) else getattr(settings, name)

    return PolicySettings(
        allow_dm=get("allow_dm"),
        allow_group_mention=get("allow_group_mention"),
        mention_required=get("mention_required"),
        allowed_chat_ids=frozenset(get("allowed_chat_ids")),
        user_whitelist=frozenset(get("user_whitelist")),
        ignore_bot_messages=get("ignore_bot_messages"),
        prefix_command=get("prefix_command"),
    )


def _where(event: MessageEvent) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "chat_id": event.chat_id,
        "chat_type": event.chat_type,
        "sender_open_id": event.sender.open_id,
    }


async def _log(conn: AsyncConnection, connector_id: int, action: LogAction, **detail: Any) -> None:
    await conn.execute(insert(IntegrationLog), [log_row(connector_id=connector_id, action=action, **detail)])


async def _routed_recently(conn: AsyncConnection, connector_id: int, sender_open_id: str) -> int:
    query = select(func.count()).where(
        InboundRow.connector_id == connector_id,
        InboundRow.sender_open_id == sender_open_id,
        InboundRow.status == InboundStatus.ROUTED.value,
        InboundRow.received_at >= utcnow() - RATE_WINDOW,
    )
    return int((await conn.execute(query)).scalar() or 0)


async def _admit(
    conn: AsyncConnection,
    connector_id: int,
    settings: RowMapping,
    event: MessageEvent,
    bot_open_id: str | None,
) -> tuple[int | None, Allowed | FilterReason]:
    """Claim the message and decide, in one transaction: a duplicate rolls back, log entry and all.

    Returns (None, DUPLICATE) for a message seen before (here or on another instance), else the id of the
    claimed row with the decision: Allowed (status still "received") or why it was filtered (logged).
    """
    decision = evaluate(policy_of(settings), event, bot_open_id)
    reason = None if isinstance(decision, Allowed) else decision.reason
    detail: dict[str, Any] = {}
    limit = settings["rate_limit_per_minute"]
    if reason is None and await _routed_recently(conn, connector_id, event.sender.open_id) >= limit:
        reason, detail = FilterReason.RATE_LIMITED, {"limit_per_minute": limit}
    status = InboundStatus.RECEIVED if reason is None else InboundStatus.FILTERED
    # INSERT … ON CONFLICT DO NOTHING RETURNING id: no row back means the unique key was taken already.
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    claim = (
        dialect_insert(InboundRow)
        .values(
            connector_id=connector_id,
            message_id=event.message_id,
            status=status.value,
            sender_open_id=event.sender.open_id,
            chat_id=event.chat_id,
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["connector_id", "message_id"])
        .returning(InboundRow.id)
    )
    row_id = (await conn.execute(claim)).scalar()
    if row_id is None:
        return None, FilterReason.DUPLICATE
    if reason is not None:
        await _log(conn, connector_id, LogAction.WS_FILTERED, reason=reason.value, **_where(event), **detail)
        return row_id, reason
    assert isinstance(decision, Allowed)
    return row_id, decision


async def process_message(
    engine: AsyncEngine,
    *,
    connector_id: int,
    event: MessageEvent,
    bot_open_id: str | None,
    butler: Butler,
    transport: str,
) -> Result:
    async with engine.begin() as conn:
        settings = (
            (await conn.execute(select(*_SETTINGS_COLUMNS).where(_C.id == connector_id))).mappings().first()
        )
        if settings is None:
            return Result(Outcome.UNKNOWN_CONNECTOR)
        if not settings["enabled"]:
            await _log(
                conn,
                connector_id,
                LogAction.WS_FILTERED,
                reason=FilterReason.CONNECTOR_DISABLED.value,
                **_where(event),
            )
            return Result(Outcome.FILTERED, FilterReason.CONNECTOR_DISABLED)
        row_id, decision = await _admit(conn, connector_id, settings, event, bot_open_id)
    if row_id is None:
        return Result(Outcome.DUPLICATE, FilterReason.DUPLICATE)  # silent, as the seed has it
    if not isinstance(decision, Allowed):
        return Result(Outcome.FILTERED, decision)

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
        await butler.handle(message)  # no transaction is open here: the Butler has sessions of its own
    except Exception as exc:
        # Not taken: forget the message, so Feishu's redelivery of it is not mistaken for a duplicate.
        log.exception("butler_handle_failed")
        async with engine.begin() as conn:
            await conn.execute(delete(InboundRow).where(InboundRow.id == row_id))
            await conn.execute(
                insert(IntegrationLog),
                [
                    log_row(
                        connector_id=connector_id,
                        action=LogAction.WS_CLIENT_ERROR,
                        level=LogLevel.ERROR,
                        error="routing to the Butler failed; the message may be delivered again",
                        exception=type(exc).__name__,
                        **_where(event),
                    )
                ],
            )
        return Result(Outcome.FAILED)

    async with engine.begin() as conn:
        await conn.execute(
            update(InboundRow).where(InboundRow.id == row_id).values(status=InboundStatus.ROUTED.value)
        )
        await _log(
            conn,
            connector_id,
            LogAction.WS_ROUTED,
            transport=transport,
            text=decision.text[:TEXT_PREVIEW_CHARS],
            **_where(event),
        )
    return Result(Outcome.ROUTED)


async def prune_seen_messages(session: AsyncSession, *, max_age: timedelta) -> int:
    result = await session.execute(delete(InboundRow).where(InboundRow.received_at < utcnow() - max_age))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
