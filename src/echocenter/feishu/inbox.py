"""The durable inbox: every admitted message is driven to a final state, by whoever holds its lease.

States (``InboundStatus``): received → routed → answered, or filtered / failed with a reason. The instance
that admitted a message holds its lease and drives it at once, renewing the lease while it works. A message
whose lease ran out (its instance died, the database went away mid-way, the Butler failed) is taken again by
the periodic sweep on any instance — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two instances never take
the same row; SQLite means one instance, same code. A re-drive is harmless: the user's turn has a unique
key, and every reply carries a deterministic Feishu ``uuid``. After ``max_attempts`` a message is failed.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.contracts import InboundMessage, MessageHandler
from echocenter.db.batching import Batcher
from echocenter.db.models import UNFINISHED, InboundStatus, IntegrationLog, LogLevel
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.types import utcnow
from echocenter.integration_logs.service import LogAction, log_row
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

MOVE_LINGER_SECONDS = 0.05
Spawn = Callable[[Awaitable[Any]], None]


def instance_name() -> str:
    """This process's name on a lease: readable, and unique even for two processes on one host."""
    return f"{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Work:
    """One message to drive: its row, where it stands, and the message itself."""

    row_id: int
    status: InboundStatus
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class _Move:
    row_id: int
    status: InboundStatus


def _where(message: InboundMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "chat_id": message.chat_id,
        "chat_type": message.chat_type,
        "sender_open_id": message.open_id,
    }


def _error_text(exc: Exception) -> str:
    """What went wrong, short, for the row's reason (the full traceback is in the process log)."""
    return f"{type(exc).__name__}: {exc}"[:150]


class Inbox:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owner: str,
        lease: timedelta,
        retry_after: timedelta,
        max_attempts: int,
        max_batch: int = 200,
    ) -> None:
        self._engine = engine
        self.owner = owner
        self._lease = lease
        self._retry_after = retry_after
        self._max_attempts = max_attempts
        # State moves linger a moment to share transactions: the claims that acks wait for come first.
        self._moves = Batcher(self._move_batch, max_batch=max_batch, linger=MOVE_LINGER_SECONDS)
        self._driving: set[int] = set()

    # --- driving one message ------------------------------------------------------------------------
    async def drive(self, work: Work, butler: MessageHandler) -> InboundStatus | None:
        """Take the message to answered. On failure it is left for a later re-drive (nothing is lost)."""
        if work.row_id in self._driving:
            return None
        self._driving.add(work.row_id)
        try:
            if work.status is InboundStatus.RECEIVED:
                await butler.handle(work.message)  # the user's turn, stored once (unique key)
                await self._moves.submit(_Move(work.row_id, InboundStatus.ROUTED))
            await butler.answer(work.message)  # every reply has a deterministic Feishu uuid
            await self._moves.submit(_Move(work.row_id, InboundStatus.ANSWERED))
            return InboundStatus.ANSWERED
        except Exception as exc:
            await self._retry_later(work, exc)
            return None
        finally:
            self._driving.discard(work.row_id)

    async def _retry_later(self, work: Work, exc: Exception) -> None:
        log.warning("inbox_drive_failed message_id=%s", work.message.message_id, exc_info=exc)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(InboundRow)
                    .where(InboundRow.id == work.row_id, InboundRow.lease_owner == self.owner)
                    .values(lease_until=utcnow() + self._retry_after, reason=_error_text(exc))
                )
                error = "the Butler could not finish this message; it will be tried again"
                entry = log_row(
                    connector_id=work.message.connector_id,
                    action=LogAction.WS_CLIENT_ERROR,
                    level=LogLevel.ERROR,
                    error=error,
                    exception=type(exc).__name__,
                    **_where(work.message),
                )
                await conn.execute(insert(IntegrationLog), [entry])
        except Exception:  # the database itself is away: the lease runs out and the sweep takes it again
            log.warning("inbox_retry_not_recorded message_id=%s", work.message.message_id)

    async def _move_batch(self, moves: Sequence[_Move]) -> list[None]:
        async with self._engine.begin() as conn:
            for status in {m.status for m in moves}:
                values: dict[str, Any] = {"status": status.value}
                if status is InboundStatus.ANSWERED:
                    values.update(lease_owner=None, lease_until=None, finished_at=utcnow())
                ids = [m.row_id for m in moves if m.status is status]
                await conn.execute(update(InboundRow).where(InboundRow.id.in_(ids)).values(**values))
        return [None] * len(moves)

    # --- the sweep: re-drive what was left behind ---------------------------------------------------
    async def take_expired(self, *, limit: int = 100) -> list[Work]:
        """Lease the unfinished messages whose lease ran out (skipping rows another instance is taking)."""
        now = utcnow()
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(
                        InboundRow.id,
                        InboundRow.status,
                        InboundRow.payload,
                        InboundRow.attempts,
                        InboundRow.reason,
                    )
                    .where(
                        InboundRow.status.in_(UNFINISHED),
                        or_(InboundRow.lease_until.is_(None), InboundRow.lease_until < now),
                    )
                    .order_by(InboundRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            given_up = [r for r in rows if r.attempts >= self._max_attempts or not r.payload]
            taken = [r for r in rows if r not in given_up]
            if taken:
                await conn.execute(
                    update(InboundRow)
                    .where(InboundRow.id.in_([r.id for r in taken]))
                    .values(
                        lease_owner=self.owner,
                        lease_until=now + self._lease,
                        attempts=InboundRow.attempts + 1,
                    )
                )
            await self._give_up(conn, given_up)
        return [Work(r.id, InboundStatus(r.status), InboundMessage(**r.payload)) for r in taken]

    async def _give_up(self, conn: Any, rows: Sequence[Any]) -> None:
        if not rows:
            return
        reasons = {r.id: self._failure(r) for r in rows}
        for row_id, reason in reasons.items():
            await conn.execute(
                update(InboundRow)
                .where(InboundRow.id == row_id)
                .values(
                    status=InboundStatus.FAILED.value, reason=reason, lease_until=None, finished_at=utcnow()
                )
            )
        entries = [
            log_row(
                connector_id=(r.payload or {}).get("connector_id"),
                action=LogAction.INBOX_FAILED,
                level=LogLevel.ERROR,
                reason=reasons[r.id],
                message_id=(r.payload or {}).get("message_id", ""),
            )
            for r in rows
        ]
        await conn.execute(insert(IntegrationLog), entries)

    def _failure(self, row: Any) -> str:
        if not row.payload:
            return "claimed without a payload (before the durable inbox)"
        last = f"; last error: {row.reason}" if row.reason else ""
        return f"not answered after {self._max_attempts} attempts{last}"[:200]

    async def renew(self) -> None:
        """Keep the leases of the messages this instance is still working on."""
        if not self._driving:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(InboundRow)
                .where(
                    InboundRow.id.in_(sorted(self._driving)),
                    InboundRow.lease_owner == self.owner,
                    InboundRow.status.in_(UNFINISHED),
                )
                .values(lease_until=utcnow() + self._lease)
            )

    async def sweep(self, butler: MessageHandler, spawn: Spawn) -> int:
        """Renew this instance's leases, then take up and drive what was left behind. Returns how many."""
        await self.renew()
        taken = await self.take_expired()
        for work in taken:
            log_event(
                log,
                str(LogAction.INBOX_REDRIVE),
                message_id=work.message.message_id,
                status=work.status.value,
            )
            spawn(self.drive(work, butler))
        return len(taken)
