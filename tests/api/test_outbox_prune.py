from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from echocenter.db.models import FeishuConnector, OutboxMessage, OutboxStatus
from echocenter.db.types import utcnow
from echocenter.feishu.outbox import prune_outbox
from tests.support.databases import Database, migrated_sessions


async def test_old_sent_and_failed_rows_are_forgotten_pending_ones_never(
    database: Database, tmp_path: Path
) -> None:
    async with migrated_sessions(database) as sessions:
        now = utcnow()
        async with sessions() as session:
            connector = FeishuConnector(connector_name="c")
            session.add(connector)
            await session.flush()
            for uuid, status, age_days in (
                ("old-sent", OutboxStatus.SENT, 9),
                ("old-failed", OutboxStatus.FAILED, 9),
                ("old-pending", OutboxStatus.PENDING, 9),
                ("new-sent", OutboxStatus.SENT, 1),
            ):
                session.add(
                    OutboxMessage(
                        connector_id=connector.id,
                        lane="chat:oc",
                        kind="text",
                        content="{}",
                        uuid=uuid,
                        status=status.value,
                        created_at=now - timedelta(days=age_days),
                    )
                )
            await session.commit()
        async with sessions() as session:
            assert await prune_outbox(session, max_age=timedelta(days=7)) == 2
            kept = set(await session.scalars(select(OutboxMessage.uuid)))
    assert kept == {"old-pending", "new-sent"}
