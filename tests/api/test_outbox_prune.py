from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.db.models import FeishuConnector, OutboxMessage, OutboxStatus
from echocenter.db.types import utcnow
from echocenter.feishu.outbox import prune_outbox
from tests.support.databases import Database


async def test_old_sent_and_failed_rows_are_forgotten_pending_ones_never(
    database: Database, tmp_path: Path
) -> None:
    engine = make_engine(database.url, schema=database.schema)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
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
    finally:
        await engine.dispose()
    assert kept == {"old-pending", "new-sent"}
