"""`echocenter audit verify`: walk the approval timeline's hash chain and name the first broken link."""

from __future__ import annotations

from echocenter.approvals import timeline
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.settings import Settings


async def verify_chain() -> timeline.Verification:
    settings = Settings()
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with make_sessionmaker(engine)() as session:
            return await timeline.verify(session)
    finally:
        await engine.dispose()


def report(result: timeline.Verification) -> str:
    if result.ok:
        return f"ok: {result.checked} timeline rows, the hash chain is intact"
    return (
        f"BROKEN at event {result.broken_at} (approval {result.approval_id}): {result.problem}; "
        f"{result.checked} rows read"
    )
