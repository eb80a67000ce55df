"""The inbound pipeline, top to bottom, in the order of its rules:

load → enabled → policy → claim (dedup) → rate limit (newly claimed only) → log → route.

Everything up to "log" is the *admission*: one transaction, shared by the messages arriving together (group
commit, SQLAlchemy Core). It ends with the message durable in the inbox (``inbound_messages``) — only then
may the transport ack it, so nothing acked is ever lost. "Route" is the inbox's job (``feishu/inbox.py``):
it hands the message to the Butler after the ack and drives it to answered, re-driving it after a crash.

Every stop but a duplicate leaves a ``ws_filtered`` entry with its reason; an admitted message leaves
``ws_routed`` (in the same transaction: from then on the inbox owns its routing). The same pipeline serves
the long connection and the HTTP callback.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping, case, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from echocenter.contracts import InboundMessage
from echocenter.db.batching import Batcher
from echocenter.db.models import FeishuConnector, InboundRateWindow, InboundStatus, IntegrationLog
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.types import utcnow
from echocenter.feishu.events import MessageEvent
from echocenter.feishu.policy import Allowed, FilterReason, PolicySettings, evaluate
from echocenter.feishu.text import resources_of
from echocenter.integration_logs.service import LogAction, log_row

RATE_WINDOW = timedelta(minutes=1)
TEXT_PREVIEW_CHARS = 200
_C = FeishuConnector
_SETTINGS_COLUMNS = (
    _C.id,
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
    ADMITTED = "admitted"  # durable in the inbox as "received": the inbox routes it
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    UNKNOWN_CONNECTOR = "unknown_connector"


@dataclass(frozen=True, slots=True)
class Admission:
    """What the admission decided for one message; ``row_id``/``message`` are set when it was admitted."""

    outcome: Outcome
    reason: FilterReason | None = None
    row_id: int | None = None
    message: InboundMessage | None = None


@dataclass(frozen=True, slots=True)
class Arrival:
    connector_id: int
    event: MessageEvent
    bot_open_id: str | None
    transport: str = "ws"

    @property
    def key(self) -> tuple[int, str]:
        return (self.connector_id, self.event.message_id)

    @property
    def sender(self) -> tuple[int, str]:
        return (self.connector_id, self.event.sender.open_id)


# What a step leaves for one arrival: allowed (with its text), a filter reason, or None (unknown connector).
Verdict = Allowed | FilterReason | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Who works on a newly admitted message, and until when (the inbox renews it while it works)."""

    owner: str
    until: datetime


def policy_of(settings: RowMapping) -> PolicySettings:
    return PolicySettings(
        allow_dm=settings["allow_dm"],
        allow_group_mention=settings["allow_group_mention"],
        mention_required=settings["mention_required"],
        allowed_chat_ids=frozenset(settings["allowed_chat_ids"]),
        user_whitelist=frozenset(settings["user_whitelist"]),
        ignore_bot_messages=settings["ignore_bot_messages"],
        prefix_command=settings["prefix_command"],
    )


def where(event: MessageEvent) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "chat_id": event.chat_id,
        "chat_type": event.chat_type,
        "sender_open_id": event.sender.open_id,
    }


def message_of(connector_id: int, event: MessageEvent, text: str) -> InboundMessage:
    """The message as the Butler gets it; stored as the inbox row's payload so any instance can answer."""
    return InboundMessage(
        connector_id=connector_id,
        event_id=event.event_id,
        message_id=event.message_id,
        text=text,
        open_id=event.sender.open_id,
        user_id=event.sender.user_id,
        union_id=event.sender.union_id,
        chat_id=event.chat_id,
        chat_type=event.chat_type,
        root_id=event.root_id,
        parent_id=event.parent_id,
        thread_id=event.thread_id,
        message_type=event.message_type,
        content=event.content if resources_of(event.message_type, event.content) else "",
    )


def _dialect_insert(conn: AsyncConnection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


# --- the steps ----------------------------------------------------------------------------------------
async def load(conn: AsyncConnection, arrivals: Sequence[Arrival]) -> dict[int, RowMapping]:
    """Each connector's settings, read once per batch (so a change applies to the next message)."""
    ids = {a.connector_id for a in arrivals}
    rows = (await conn.execute(select(*_SETTINGS_COLUMNS).where(_C.id.in_(ids)))).mappings().all()
    return {row["id"]: row for row in rows}


def enabled_and_policy(settings: RowMapping | None, arrival: Arrival) -> Verdict:
    """Pure: unknown connector (None), disabled, or what the connector's policy says of the message."""
    if settings is None:
        return None
    if not settings["enabled"]:
        return FilterReason.CONNECTOR_DISABLED
    verdict = evaluate(policy_of(settings), arrival.event, arrival.bot_open_id)
    return verdict if isinstance(verdict, Allowed) else verdict.reason


def _claim_row(arrival: Arrival, verdict: Allowed | FilterReason, lease: Lease) -> dict[str, Any]:
    row = {
        "connector_id": arrival.connector_id,
        "message_id": arrival.event.message_id,
        "sender_open_id": arrival.event.sender.open_id,
        "chat_id": arrival.event.chat_id,
        "received_at": utcnow(),
    }
    if isinstance(verdict, FilterReason):
        stop = {
            "payload": None,
            "reason": verdict.value,
            "attempts": 0,
            "lease_owner": None,
            "lease_until": None,
        }
        return row | stop | {"status": InboundStatus.FILTERED.value}
    message = asdict(message_of(arrival.connector_id, arrival.event, verdict.text))
    lease_columns = {"attempts": 1, "lease_owner": lease.owner, "lease_until": lease.until}
    return row | lease_columns | {"status": InboundStatus.RECEIVED.value, "payload": message, "reason": None}


async def claim(
    conn: AsyncConnection, arrivals: Sequence[Arrival], verdicts: Sequence[Verdict], lease: Lease
) -> dict[tuple[int, str], int]:
    """Dedup: INSERT … ON CONFLICT DO NOTHING RETURNING — the rows back are the messages seen the first time.

    A disabled connector's messages (and an unknown connector's) are not claimed, so they are not "seen".
    """
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for arrival, verdict in zip(arrivals, verdicts, strict=True):
        if verdict is not None and verdict is not FilterReason.CONNECTOR_DISABLED:
            rows.setdefault(arrival.key, _claim_row(arrival, verdict, lease))
    if not rows:
        return {}
    statement = (
        _dialect_insert(conn)(InboundRow)
        .on_conflict_do_nothing(index_elements=["connector_id", "message_id"])
        .returning(InboundRow.id, InboundRow.connector_id, InboundRow.message_id)
    )
    # Sorted, so two instances claiming overlapping batches lock in the same order (no deadlock). The
    # executemany form is batched by SQLAlchemy into multi-row VALUES with one cached compilation.
    claims = [rows[key] for key in sorted(rows)]
    return {(c, m): i for i, c, m in (await conn.execute(statement, claims)).all()}


async def _count(conn: AsyncConnection, senders: dict[tuple[int, str], int]) -> dict[tuple[int, str], int]:
    """Add each sender's new messages to its window atomically; the count before them comes back."""
    now = utcnow()
    table = InboundRateWindow
    statement = _dialect_insert(conn)(table)
    expired = table.window_start <= now - RATE_WINDOW
    statement = statement.on_conflict_do_update(
        index_elements=["connector_id", "sender_open_id"],
        set_={
            "count": case((expired, statement.excluded.count), else_=table.count + statement.excluded.count),
            "window_start": case((expired, statement.excluded.window_start), else_=table.window_start),
        },
    ).returning(table.connector_id, table.sender_open_id, table.count)
    params = [
        {"connector_id": c, "sender_open_id": s, "window_start": now, "count": n}
        for (c, s), n in sorted(senders.items())
    ]
    after = {(c, s): n for c, s, n in (await conn.execute(statement, params)).all()}
    return {key: after[key] - n for key, n in senders.items()}


async def rate_limit(
    conn: AsyncConnection,
    arrivals: Sequence[Arrival],
    verdicts: list[Verdict],
    fresh: dict[tuple[int, str], int],
    settings: dict[int, RowMapping],
) -> None:
    """Per sender and minute, exact across instances (an atomic counter); only newly claimed messages count,
    so a redelivered duplicate never uses up a sender's allowance. Over the limit: filtered, rate_limited."""
    admitted: dict[tuple[int, str], int] = {}  # message → its first index in the batch
    for i, (arrival, verdict) in enumerate(zip(arrivals, verdicts, strict=True)):
        if isinstance(verdict, Allowed) and arrival.key in fresh:
            admitted.setdefault(arrival.key, i)
    senders: defaultdict[tuple[int, str], int] = defaultdict(int)
    for i in admitted.values():
        senders[arrivals[i].sender] += 1
    if not senders:
        return
    used = await _count(conn, dict(senders))
    limited: list[int] = []
    for i in admitted.values():
        arrival = arrivals[i]
        used[arrival.sender] += 1
        if used[arrival.sender] > settings[arrival.connector_id]["rate_limit_per_minute"]:
            verdicts[i] = FilterReason.RATE_LIMITED
            limited.append(fresh[arrival.key])
    if limited:
        await conn.execute(
            update(InboundRow)
            .where(InboundRow.id.in_(limited))
            .values(
                status=InboundStatus.FILTERED.value,
                reason=FilterReason.RATE_LIMITED.value,
                payload=None,
                lease_owner=None,
                lease_until=None,
            )
        )


def _routed_log(arrival: Arrival, text: str) -> dict[str, Any]:
    return log_row(
        connector_id=arrival.connector_id,
        action=LogAction.WS_ROUTED,
        transport=arrival.transport,
        text=text[:TEXT_PREVIEW_CHARS],
        **where(arrival.event),
    )


def _admission(
    arrival: Arrival,
    verdict: Verdict,
    fresh: dict[tuple[int, str], int],
    settings: dict[int, RowMapping],
    logs: list[dict[str, Any]],
) -> Admission:
    """One message's outcome; a filter stop adds its ``ws_filtered`` entry to ``logs``."""
    if verdict is None:
        return Admission(Outcome.UNKNOWN_CONNECTOR)
    row_id = fresh.pop(arrival.key, None)  # popped: the same message twice in a batch is a duplicate
    if verdict is not FilterReason.CONNECTOR_DISABLED and row_id is None:
        return Admission(Outcome.DUPLICATE, FilterReason.DUPLICATE)  # seen before, here or elsewhere: silent
    if isinstance(verdict, Allowed):
        logs.append(_routed_log(arrival, verdict.text))
        message = message_of(arrival.connector_id, arrival.event, verdict.text)
        return Admission(Outcome.ADMITTED, row_id=row_id, message=message)
    detail: dict[str, Any] = {}
    if verdict is FilterReason.RATE_LIMITED:
        detail["limit_per_minute"] = settings[arrival.connector_id]["rate_limit_per_minute"]
    logs.append(
        log_row(
            connector_id=arrival.connector_id,
            action=LogAction.WS_FILTERED,
            reason=verdict.value,
            **where(arrival.event),
            **detail,
        )
    )
    return Admission(Outcome.FILTERED, verdict, row_id=row_id)


async def log_outcomes(
    conn: AsyncConnection,
    arrivals: Sequence[Arrival],
    verdicts: Sequence[Verdict],
    fresh: dict[tuple[int, str], int],
    settings: dict[int, RowMapping],
) -> list[Admission]:
    logs: list[dict[str, Any]] = []
    remaining = dict(fresh)
    admissions = [
        _admission(a, v, remaining, settings, logs) for a, v in zip(arrivals, verdicts, strict=True)
    ]
    if logs:
        await conn.execute(insert(IntegrationLog), logs)
    return admissions


class InboundPipeline:
    """Admits messages in groups (one transaction per group); the caller acks once ``admit`` returns."""

    def __init__(self, engine: AsyncEngine, *, lease: timedelta, owner: str, max_batch: int = 200) -> None:
        self._engine = engine
        self._lease = lease
        self._owner = owner
        self._admit = Batcher(self._admit_batch, max_batch=max_batch)

    async def admit(
        self, *, connector_id: int, event: MessageEvent, bot_open_id: str | None, transport: str = "ws"
    ) -> Admission:
        """Raises when the database cannot take the message: then it must not be acked."""
        return await self._admit.submit(Arrival(connector_id, event, bot_open_id, transport))

    async def _admit_batch(self, arrivals: Sequence[Arrival]) -> list[Admission]:
        lease = Lease(self._owner, utcnow() + self._lease)
        async with self._engine.begin() as conn:
            settings = await load(conn, arrivals)
            verdicts = [enabled_and_policy(settings.get(a.connector_id), a) for a in arrivals]
            fresh = await claim(conn, arrivals, verdicts, lease)
            await rate_limit(conn, arrivals, verdicts, fresh, settings)
            return await log_outcomes(conn, arrivals, verdicts, fresh, settings)


async def prune_seen_messages(session: AsyncSession, *, max_age: timedelta) -> int:
    """Forget finished messages past the dedup retention (an unfinished one is kept until it is done), and
    the rate windows of senders quiet for longer than a window."""
    result = await session.execute(
        delete(InboundRow).where(
            InboundRow.received_at < utcnow() - max_age,
            InboundRow.status.not_in([InboundStatus.RECEIVED.value, InboundStatus.ROUTED.value]),
        )
    )
    await session.execute(
        delete(InboundRateWindow).where(InboundRateWindow.window_start < utcnow() - 2 * RATE_WINDOW)
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
