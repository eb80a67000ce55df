"""Writing a row behind the service's back, as another instance (or an old one) would have left it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from echocenter.db.engine import make_engine
from echocenter.db.models import Approval
from echocenter.settings import Settings


async def set_approval(settings: Settings, approval_id: int, **values: Any) -> None:
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(Approval).where(Approval.id == approval_id).values(**values))
    finally:
        await engine.dispose()
