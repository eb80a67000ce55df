"""Every message showing an approval's card: the chat's, each approver's DM, each reminder. A click is
accepted from any of them (and from no other message), and all of them are updated when it is decided."""

from __future__ import annotations

import hmac

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import Approval, ApprovalCardCopy
from echocenter.db.types import utcnow


async def add(session: AsyncSession, *, approval_id: int, message_id: str, audience: str) -> None:
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        dialect_insert(ApprovalCardCopy)
        .values(approval_id=approval_id, message_id=message_id, audience=audience[:160], created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["message_id"])
    )
    await session.commit()


async def message_ids(session: AsyncSession, approval: Approval) -> list[str]:
    """The approval's card messages, oldest first (the first card_message_id included for older rows)."""
    rows = await session.scalars(
        select(ApprovalCardCopy.message_id)
        .where(ApprovalCardCopy.approval_id == approval.id)
        .order_by(ApprovalCardCopy.id)
    )
    ids = list(rows)
    if approval.card_message_id and approval.card_message_id not in ids:
        ids.insert(0, approval.card_message_id)
    return ids


def is_one_of(message_id: str, card_ids: list[str]) -> bool:
    # Compared in constant time, each: which copies exist is no secret, but the habit costs nothing.
    found = False
    for card_id in card_ids:
        found |= hmac.compare_digest(message_id.encode(), card_id.encode())
    return bool(message_id) and found
