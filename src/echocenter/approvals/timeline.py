"""The approval timeline: append-only rows, one hash chain for every approval of the installation.

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's canonical content (sorted-key JSON
of approval_id, kind, actor, actor_name, detail and created_at), so editing, inserting or deleting a row
behind the service's back breaks the chain at that row, and ``verify`` names it. One chain (rather than one
per approval) also reveals a whole approval's trail being removed.

Appends are serialised across instances: on PostgreSQL by a transaction-level advisory lock (SQLite's single
pooled connection does the same in-process), and everywhere by the unique ``prev_hash``: two appends on the
same head cannot both commit; the loser retries on the new head.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.db.models import ApprovalEvent
from echocenter.db.types import utcnow

GENESIS = "0" * 64
# pg_advisory_xact_lock key: "EchoCenter approval timeline" (any constant unique to this use).
_ADVISORY_KEY = 0x45434154
_APPEND_ATTEMPTS = 20


class EventKind:
    REQUESTED = "requested"
    CARD_SENT = "card_sent"
    VOTE = "vote"
    DECIDED = "decided"
    EXPIRED = "expired"
    DIRECTIVE_SENT = "directive_sent"
    RESULT = "result"
    REMINDED = "reminded"
    ESCALATED = "escalated"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(
    *, approval_id: int, kind: str, actor: str, actor_name: str, detail: dict[str, Any], created_at: datetime
) -> str:
    return json.dumps(
        {
            "approval_id": approval_id,
            "kind": kind,
            "actor": actor,
            "actor_name": actor_name,
            "detail": detail,
            "created_at": _stamp(created_at),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def row_hash(event: ApprovalEvent) -> str:
    content = canonical(
        approval_id=event.approval_id,
        kind=event.kind,
        actor=event.actor,
        actor_name=event.actor_name,
        detail=dict(event.detail or {}),
        created_at=event.created_at,
    )
    return chain_hash(event.prev_hash, content)


async def _head(session: AsyncSession) -> str:
    last = await session.scalar(select(ApprovalEvent.hash).order_by(ApprovalEvent.id.desc()).limit(1))
    return last or GENESIS


async def append(
    sessions: async_sessionmaker[AsyncSession],
    *,
    approval_id: int,
    kind: str,
    actor: str = "",
    actor_name: str = "",
    **detail: Any,
) -> ApprovalEvent:
    """Add one event at the head of the chain, in its own transaction."""
    clean = {k: v for k, v in detail.items() if v is not None}
    for attempt in range(_APPEND_ATTEMPTS):
        async with sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
            prev = await _head(session)
            now = utcnow()
            event = ApprovalEvent(
                approval_id=approval_id,
                kind=kind,
                actor=actor[:128],
                actor_name=actor_name[:128],
                detail=clean,
                created_at=now,
                prev_hash=prev,
            )
            event.hash = row_hash(event)
            session.add(event)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()  # someone else took this head: chain onto the new one
                await asyncio.sleep(0.005 * (attempt + 1))
                continue
            return event
    raise RuntimeError("the approval timeline is too busy to append to")


async def for_approval(session: AsyncSession, approval_id: int) -> list[ApprovalEvent]:
    query = select(ApprovalEvent).where(ApprovalEvent.approval_id == approval_id).order_by(ApprovalEvent.id)
    return list(await session.scalars(query))


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int  # rows read
    broken_at: int | None = None  # the id of the first row that does not fit the chain
    approval_id: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "broken_at": self.broken_at,
            "approval_id": self.approval_id,
            "problem": self.problem,
        }


async def verify(session: AsyncSession, *, batch: int = 1000) -> Verification:
    """Walk the chain in order; report the first row whose link or content does not match."""
    expected_prev, checked, after = GENESIS, 0, 0
    while True:
        rows = list(
            await session.scalars(
                select(ApprovalEvent).where(ApprovalEvent.id > after).order_by(ApprovalEvent.id).limit(batch)
            )
        )
        if not rows:
            return Verification(True, checked)
        for event in rows:
            checked += 1
            if event.prev_hash != expected_prev:
                problem = "the previous row is missing or was changed (prev_hash does not match)"
                return Verification(False, checked, event.id, event.approval_id, problem)
            if row_hash(event) != event.hash:
                problem = "the row's content does not match its hash (edited after it was written)"
                return Verification(False, checked, event.id, event.approval_id, problem)
            expected_prev = event.hash
        after = rows[-1].id
        session.expunge_all()


def event_view(event: ApprovalEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "approval_id": event.approval_id,
        "kind": event.kind,
        "actor": event.actor,
        "actor_name": event.actor_name,
        "detail": dict(event.detail or {}),
        "created_at": _stamp(event.created_at),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


async def stream_events(
    sessions: async_sessionmaker[AsyncSession], *, approval_ids: list[int], batch: int = 500
) -> AsyncIterator[ApprovalEvent]:
    for start in range(0, len(approval_ids), batch):
        chunk = approval_ids[start : start + batch]
        async with sessions() as session:
            rows = await session.scalars(
                select(ApprovalEvent)
                .where(ApprovalEvent.approval_id.in_(chunk))
                .order_by(ApprovalEvent.approval_id, ApprovalEvent.id)
            )
            for row in rows:
                yield row
