"""The inbound pipeline, top to bottom as the seed has it:

connector enabled → dedup by message_id → policy filters → text normalisation / prefix → rate limit → Butler.

Every stop but a duplicate leaves a ``ws_filtered`` entry with its reason; a routed message leaves
``ws_routed``. The same pipeline serves the long connection and the HTTP callback.

This is the hot path of the service. Its two writes — the claim (dedup row, decision, filter log) and the
"routed" mark (status, ``ws_routed`` log) — go through group commit: messages arriving together share one
transaction each, in SQLAlchemy Core rather than the ORM unit of work. The semantics stay those of one
message at a time: the unique key decides duplicates, and a message the Butler did not take is forgotten.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from echocenter.butler.interface import Butler, InboundMessage
from echocenter.db.batching import Batcher
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
    ROUTED = "routed"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    UNKNOWN_CONNECTOR = "unknown_connector"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    reason: FilterReason | None = None


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


def _where(event: MessageEvent) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "chat_id": event.chat_id,
        "chat_type": event.chat_type,
        "sender_open_id": event.sender.open_id,
    }


@dataclass(frozen=True, slots=True)
class _Arrival:
    connector_id: int
    event: MessageEvent
    bot_open_id: str | None


@dataclass(frozen=True, slots=True)
class _Admission:
    """What the claim transaction decided for one message."""

    outcome: Outcome
    reason: FilterReason | None = None
    row_id: int | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Routed:
    row_id: int
    log: dict[str, Any]


async def _recent_counts(conn: AsyncConnection, keys: set[tuple[int, str]]) -> Counter[tuple[int, str]]:
    """Messages per (connector, sender) in the rate window: routed ones and those still on their way."""
    if not keys:
        return Counter()
    query = (
        select(InboundRow.connector_id, InboundRow.sender_open_id, func.count())
        .where(
            tuple_(InboundRow.connector_id, InboundRow.sender_open_id).in_(sorted(keys)),
            InboundRow.status.in_([InboundStatus.ROUTED.value, InboundStatus.RECEIVED.value]),
            InboundRow.received_at >= utcnow() - RATE_WINDOW,
        )
        .group_by(InboundRow.connector_id, InboundRow.sender_open_id)
    )
    return Counter({(c, s): n for c, s, n in (await conn.execute(query)).all()})


class InboundPipeline:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 200) -> None:
        self._engine = engine
        self._admit = Batcher(self._admit_batch, max_batch=max_batch)
        self._mark_routed = Batcher(self._routed_batch, max_batch=max_batch)

    async def process(
        self,
        *,
        connector_id: int,
        event: MessageEvent,
        bot_open_id: str | None,
        butler: Butler,
        transport: str,
    ) -> Result:
        admission = await self._admit.submit(_Arrival(connector_id, event, bot_open_id))
        if admission.outcome is not Outcome.ROUTED:
            return Result(admission.outcome, admission.reason)
        assert admission.row_id is not None
        message = InboundMessage(
            connector_id=connector_id,
            event_id=event.event_id,
            message_id=event.message_id,
            text=admission.text,
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
            await self._forget(connector_id, admission.row_id, event, exc)
            return Result(Outcome.FAILED)
        await self._mark_routed.submit(
            _Routed(
                admission.row_id,
                log_row(
                    connector_id=connector_id,
                    action=LogAction.WS_ROUTED,
                    transport=transport,
                    text=admission.text[:TEXT_PREVIEW_CHARS],
                    **_where(event),
                ),
            )
        )
        return Result(Outcome.ROUTED)

    async def _forget(self, connector_id: int, row_id: int, event: MessageEvent, exc: Exception) -> None:
        """Not taken by the Butler: forget the message, so Feishu's redelivery is no duplicate."""
        log.exception("butler_handle_failed", exc_info=exc)
        async with self._engine.begin() as conn:
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

    async def _admit_batch(self, arrivals: Sequence[_Arrival]) -> list[_Admission]:
        async with self._engine.begin() as conn:
            ids = {a.connector_id for a in arrivals}
            rows = (await conn.execute(select(*_SETTINGS_COLUMNS).where(_C.id.in_(ids)))).mappings().all()
            settings = {row["id"]: row for row in rows}

            # Decide each message (pure), in arrival order.
            decisions: list[Allowed | FilterReason | None] = []
            for arrival in arrivals:
                found = settings.get(arrival.connector_id)
                if found is None:
                    decisions.append(None)
                elif not found["enabled"]:
                    decisions.append(FilterReason.CONNECTOR_DISABLED)
                else:
                    verdict = evaluate(policy_of(found), arrival.event, arrival.bot_open_id)
                    decisions.append(verdict if isinstance(verdict, Allowed) else verdict.reason)

            # The rate limit counts what the database has seen plus what this batch lets through.
            keys = {
                (a.connector_id, a.event.sender.open_id)
                for a, d in zip(arrivals, decisions, strict=True)
                if isinstance(d, Allowed)
            }
            counts = await _recent_counts(conn, keys)
            claims: list[dict[str, Any]] = []
            counted: set[tuple[int, str]] = set()  # a redelivery in the same batch is one message, not two
            for index, (arrival, decision) in enumerate(zip(arrivals, decisions, strict=True)):
                if decision is None or decision is FilterReason.CONNECTOR_DISABLED:
                    continue  # not claimed: a disabled connector's messages are not marked as seen
                message = (arrival.connector_id, arrival.event.message_id)
                if isinstance(decision, Allowed) and message not in counted:
                    key = (arrival.connector_id, arrival.event.sender.open_id)
                    if counts[key] >= settings[arrival.connector_id]["rate_limit_per_minute"]:
                        decisions[index] = decision = FilterReason.RATE_LIMITED
                    else:
                        counts[key] += 1
                        counted.add(message)
                claims.append(
                    {
                        "connector_id": arrival.connector_id,
                        "message_id": arrival.event.message_id,
                        "sender_open_id": arrival.event.sender.open_id,
                        "chat_id": arrival.event.chat_id,
                        "status": (
                            InboundStatus.RECEIVED
                            if isinstance(decision, Allowed)
                            else InboundStatus.FILTERED
                        ).value,
                        "received_at": utcnow(),
                    }
                )
            claimed = await self._claim(conn, claims)

            admissions: list[_Admission] = []
            logs: list[dict[str, Any]] = []
            taken: set[tuple[int, str]] = set()
            for arrival, decision in zip(arrivals, decisions, strict=True):
                key = (arrival.connector_id, arrival.event.message_id)
                if decision is None:
                    admissions.append(_Admission(Outcome.UNKNOWN_CONNECTOR))
                    continue
                if decision is FilterReason.CONNECTOR_DISABLED:
                    logs.append(
                        log_row(
                            connector_id=arrival.connector_id,
                            action=LogAction.WS_FILTERED,
                            reason=decision.value,
                            **_where(arrival.event),
                        )
                    )
                    admissions.append(_Admission(Outcome.FILTERED, decision))
                    continue
                if key not in claimed or key in taken:  # seen before, here or elsewhere: silent
                    admissions.append(_Admission(Outcome.DUPLICATE, FilterReason.DUPLICATE))
                    continue
                taken.add(key)
                if isinstance(decision, Allowed):
                    admissions.append(_Admission(Outcome.ROUTED, row_id=claimed[key], text=decision.text))
                    continue
                detail: dict[str, Any] = {}
                if decision is FilterReason.RATE_LIMITED:
                    detail["limit_per_minute"] = settings[arrival.connector_id]["rate_limit_per_minute"]
                logs.append(
                    log_row(
                        connector_id=arrival.connector_id,
                        action=LogAction.WS_FILTERED,
                        reason=decision.value,
                        **_where(arrival.event),
                        **detail,
                    )
                )
                admissions.append(_Admission(Outcome.FILTERED, decision, row_id=claimed[key]))
            if logs:
                await conn.execute(insert(IntegrationLog), logs)
        return admissions

    @staticmethod
    async def _claim(conn: AsyncConnection, claims: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
        """INSERT … ON CONFLICT DO NOTHING RETURNING: the rows back are the messages seen the first time."""
        if not claims:
            return {}
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = (
            dialect_insert(InboundRow)
            .on_conflict_do_nothing(index_elements=["connector_id", "message_id"])
            .returning(InboundRow.id, InboundRow.connector_id, InboundRow.message_id)
        )
        # executemany form: SQLAlchemy batches it into multi-row VALUES itself ("insertmanyvalues") with one
        # cached compilation, where .values(list) would compile anew for every batch size.
        return {(c, m): i for i, c, m in (await conn.execute(statement, claims)).all()}

    async def _routed_batch(self, items: Sequence[_Routed]) -> list[None]:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(InboundRow)
                .where(InboundRow.id.in_([item.row_id for item in items]))
                .values(status=InboundStatus.ROUTED.value)
            )
            await conn.execute(insert(IntegrationLog), [item.log for item in items])
        return [None] * len(items)


async def prune_seen_messages(session: AsyncSession, *, max_age: timedelta) -> int:
    result = await session.execute(delete(InboundRow).where(InboundRow.received_at < utcnow() - max_age))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
