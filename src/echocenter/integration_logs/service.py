"""Write, page and prune integration log entries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.models import IntegrationLog, LogLevel
from echocenter.db.types import utcnow
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)


class LogAction(StrEnum):
    """Stable action names (the seed's, kept as they are; add, never rename)."""

    CREATE_CONNECTOR = "create_connector"
    UPDATE_CONNECTOR = "update_connector"
    DELETE_CONNECTOR = "delete_connector"
    VERIFY_CALLBACK = "verify_callback"
    ENABLE_CONNECTOR = "enable_connector"
    DISABLE_CONNECTOR = "disable_connector"
    WS_CONNECTING = "ws_connecting"
    WS_CONNECTED = "ws_connected"
    WS_DISCONNECTED = "ws_disconnected"
    WS_CLIENT_ERROR = "ws_client_error"
    WS_EVENT_IGNORED = "ws_event_ignored"
    CALLBACK_REJECTED = "callback_rejected"
    WS_FILTERED = "ws_filtered"
    WS_ROUTED = "ws_routed"
    WS_OUTBOUND = "ws_outbound"
    WS_AUTH_CARD = "ws_auth_card"
    WS_AUTH_CARD_DECISION = "ws_auth_card_decision"
    APPROVAL_RESULT = "approval_result"
    BUTLER_ERROR = "butler_error"
    APPROVAL_REFUSED = "approval_refused"  # a command outside the agent's list: no card
    COMMAND_REFUSED = "command_refused"
    UNKNOWN_CONNECTOR = "unknown_connector"  # an event for a connector that does not exist (any more)
    INBOX_REDRIVE = "inbox_redrive"  # an unfinished message taken up again after its lease ran out
    INBOX_FAILED = "inbox_failed"  # given up on after too many attempts (the reason is in the row)
    STREAMING_FALLBACK = "streaming_fallback"  # CardKit refused: this connector's replies go as text
    ATTACHMENT_REFUSED = "attachment_refused"  # an image or file the Butler could not read


# The audit trail: who changed a connector and who decided what. Retention caps these separately from the
# traffic entries (which anyone can cause, e.g. with bad callbacks), so noise never evicts them.
AUDIT_ACTIONS = frozenset(
    {
        LogAction.CREATE_CONNECTOR,
        LogAction.UPDATE_CONNECTOR,
        LogAction.DELETE_CONNECTOR,
        LogAction.VERIFY_CALLBACK,
        LogAction.ENABLE_CONNECTOR,
        LogAction.DISABLE_CONNECTOR,
        LogAction.WS_AUTH_CARD_DECISION,
        LogAction.APPROVAL_RESULT,
    }
)

# Belt and braces: whatever a caller passes, these keys never reach the log.
_SECRET_KEYS = frozenset(
    {"app_secret", "verification_token", "encrypt_key", "tenant_access_token", "password", "token", "secret"}
)
_PY_LEVELS = {LogLevel.INFO: logging.INFO, LogLevel.WARN: logging.WARNING, LogLevel.ERROR: logging.ERROR}


def _scrub(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if k.lower() in _SECRET_KEYS else v) for k, v in detail.items()}


def log_row(
    *, connector_id: int | None, action: LogAction | str, level: LogLevel = LogLevel.INFO, **detail: Any
) -> dict[str, Any]:
    """The column values of an entry (also echoed to the process log), for a Core insert on a hot path."""
    clean = _scrub(detail)
    log_event(log, str(action), level=_PY_LEVELS[level], connector_id=connector_id, **clean)
    return {
        "connector_id": connector_id,
        "level": level.value,
        "action": str(action),
        "detail": clean,
        "created_at": utcnow(),
    }


def record(
    session: AsyncSession,
    *,
    connector_id: int | None,
    action: LogAction | str,
    level: LogLevel = LogLevel.INFO,
    **detail: Any,
) -> IntegrationLog:
    """Add an entry to the session; it is stored with the caller's commit, atomically with its cause."""
    entry = IntegrationLog(**log_row(connector_id=connector_id, action=action, level=level, **detail))
    session.add(entry)
    return entry


async def record_now(
    sessions: async_sessionmaker[AsyncSession],
    *,
    connector_id: int | None,
    action: LogAction | str,
    level: LogLevel = LogLevel.INFO,
    **detail: Any,
) -> None:
    """Write an entry in a session of its own (for background work with no transaction at hand)."""
    async with sessions() as session:
        record(session, connector_id=connector_id, action=action, level=level, **detail)
        await session.commit()


@dataclass(frozen=True, slots=True)
class LogPage:
    items: list[IntegrationLog]
    next_cursor: str | None


async def page(
    session: AsyncSession,
    *,
    connector_id: int | None,
    limit: int,
    cursor: int | None = None,
    action: str | None = None,
    level: LogLevel | None = None,
) -> LogPage:
    """Newest first. ``next_cursor`` is None on the last page (one extra row is read to know)."""
    # connector_id None pages the entries that belong to no connector (e.g. deletions).
    query = select(IntegrationLog).where(
        IntegrationLog.connector_id.is_(None)
        if connector_id is None
        else IntegrationLog.connector_id == connector_id
    )
    if cursor is not None:
        query = query.where(IntegrationLog.id < cursor)
    if action:
        query = query.where(IntegrationLog.action == action)
    if level:
        query = query.where(IntegrationLog.level == level.value)
    rows = list(await session.scalars(query.order_by(IntegrationLog.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return LogPage(items=items, next_cursor=str(items[-1].id) if more else None)


async def prune(
    session: AsyncSession,
    *,
    max_age: timedelta,
    max_rows: int,
    max_audit_rows: int | None = None,
    now: datetime | None = None,
) -> int:
    """Delete entries older than ``max_age``, then cap each class: all but the newest ``max_rows`` traffic
    entries and the newest ``max_audit_rows`` audit entries (default: ``max_rows``). Returns how many went."""
    cutoff = (now or utcnow()) - max_age
    removed = await _delete_where(session, IntegrationLog.created_at < cutoff)
    audit = IntegrationLog.action.in_([str(a) for a in AUDIT_ACTIONS])
    for in_class, cap in ((audit, max_audit_rows or max_rows), (~audit, max_rows)):
        # The id of the newest entry of the class beyond its cap; it and the older ones of the class go.
        boundary = await session.scalar(
            select(IntegrationLog.id).where(in_class).order_by(IntegrationLog.id.desc()).offset(cap).limit(1)
        )
        if boundary is not None:
            removed += await _delete_where(session, in_class & (IntegrationLog.id <= boundary))
    await session.commit()
    return removed


async def _delete_where(session: AsyncSession, condition: ColumnElement[bool]) -> int:
    result = await session.execute(delete(IntegrationLog).where(condition))
    return int(getattr(result, "rowcount", 0) or 0)


async def count(session: AsyncSession, *, connector_id: int | None = None) -> int:
    query = select(func.count()).select_from(IntegrationLog)
    if connector_id is not None:
        query = query.where(IntegrationLog.connector_id == connector_id)
    return int(await session.scalar(query) or 0)
