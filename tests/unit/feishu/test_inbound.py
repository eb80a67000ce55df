"""The admission: load → enabled → policy → claim (dedup) → rate limit (newly claimed only) → log, against a
real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from echocenter.db.engine import make_engine
from echocenter.db.models import FeishuConnector, InboundStatus, IntegrationLog
from echocenter.feishu.inbound import InboundPipeline, Outcome
from echocenter.feishu.policy import FilterReason
from tests.support.databases import Database
from tests.support.events import dm
from tests.unit.feishu.conftest import inbox_rows

LEASE = timedelta(seconds=30)


def pipeline(engine: AsyncEngine, owner: str = "test-instance") -> InboundPipeline:
    return InboundPipeline(engine, lease=LEASE, owner=owner)


async def test_an_admitted_message_is_stored_with_all_it_takes_to_answer_it(
    engine: AsyncEngine, connector_id: int
) -> None:
    event = dm("hello there")
    admission = await pipeline(engine).admit(connector_id=connector_id, event=event, bot_open_id=None)
    assert admission.outcome is Outcome.ADMITTED
    [row] = await inbox_rows(engine)
    assert row.status == InboundStatus.RECEIVED.value and row.id == admission.row_id
    assert row.payload is not None
    assert row.payload["text"] == "hello there" and row.payload["message_id"] == event.message_id
    assert row.payload["chat_id"] == event.chat_id and row.payload["open_id"] == "ou_alice"
    assert row.payload["event_id"] == event.event_id and "root_id" in row.payload
    assert row.lease_owner == "test-instance" and row.lease_until is not None and row.attempts == 1


async def test_a_redelivered_duplicate_does_not_use_up_the_rate_limit(
    engine: AsyncEngine, connector_id: int
) -> None:
    admit = pipeline(engine).admit
    first = [dm(f"m{i}") for i in range(4)]
    for event in first:
        assert (
            await admit(connector_id=connector_id, event=event, bot_open_id=None)
        ).outcome is Outcome.ADMITTED
    # Feishu pushes the first one again three times, in the same batch as a new message.
    again = [admit(connector_id=connector_id, event=first[0], bot_open_id=None) for _ in range(3)]
    fifth, sixth = dm("m4"), dm("m5")
    outcomes = await asyncio.gather(*again, admit(connector_id=connector_id, event=fifth, bot_open_id=None))
    assert [o.outcome for o in outcomes] == [Outcome.DUPLICATE] * 3 + [Outcome.ADMITTED]
    over = await admit(connector_id=connector_id, event=sixth, bot_open_id=None)
    assert over.outcome is Outcome.FILTERED and over.reason is FilterReason.RATE_LIMITED
    [row] = [r for r in await inbox_rows(engine) if r.id == over.row_id]
    assert row.status == InboundStatus.FILTERED.value and row.reason == "rate_limited"


async def test_the_rate_limit_is_exact_across_instances(
    engine: AsyncEngine, connector_id: int, database: Database
) -> None:
    other_engine = make_engine(database.url, schema=database.schema)  # a second instance's own pool
    try:
        one, two = pipeline(engine, "one"), pipeline(other_engine, "two")
        admissions = await asyncio.gather(
            *(
                (one if i % 2 else two).admit(connector_id=connector_id, event=dm(f"m{i}"), bot_open_id=None)
                for i in range(20)
            )
        )
    finally:
        await other_engine.dispose()
    outcomes = Counter(a.outcome for a in admissions)
    assert outcomes == {Outcome.ADMITTED: 5, Outcome.FILTERED: 15}  # the connector allows 5 a minute
    assert {a.reason for a in admissions if a.outcome is Outcome.FILTERED} == {FilterReason.RATE_LIMITED}


async def test_each_sender_has_a_limit_of_its_own(engine: AsyncEngine, connector_id: int) -> None:
    admit = pipeline(engine).admit
    alice = [await admit(connector_id=connector_id, event=dm(), bot_open_id=None) for _ in range(6)]
    bob = await admit(connector_id=connector_id, event=dm(sender="ou_bob"), bot_open_id=None)
    assert [a.outcome for a in alice].count(Outcome.ADMITTED) == 5
    assert bob.outcome is Outcome.ADMITTED


async def test_an_unknown_connector_is_not_claimed(engine: AsyncEngine, connector_id: int) -> None:
    admission = await pipeline(engine).admit(connector_id=connector_id + 1, event=dm(), bot_open_id=None)
    assert admission.outcome is Outcome.UNKNOWN_CONNECTOR
    assert await inbox_rows(engine) == []


async def log_entries(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with AsyncSession(engine) as session:
        rows = await session.scalars(select(IntegrationLog).order_by(IntegrationLog.id))
        return [(row.action, row.detail.get("reason")) for row in rows]


async def set_connector(engine: AsyncEngine, connector_id: int, **values: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(FeishuConnector).where(FeishuConnector.id == connector_id).values(**values))


async def test_a_disabled_connectors_message_is_filtered_and_not_claimed(
    engine: AsyncEngine, connector_id: int
) -> None:
    await set_connector(engine, connector_id, enabled=False)
    event = dm()
    stopped = await pipeline(engine).admit(connector_id=connector_id, event=event, bot_open_id=None)
    assert stopped.outcome is Outcome.FILTERED and stopped.reason is FilterReason.CONNECTOR_DISABLED
    assert await inbox_rows(engine) == []  # not "seen": Feishu's redelivery after enabling is answered
    await set_connector(engine, connector_id, enabled=True)
    again = await pipeline(engine).admit(connector_id=connector_id, event=event, bot_open_id=None)
    assert again.outcome is Outcome.ADMITTED


async def test_a_policy_stop_is_claimed_so_its_redelivery_is_a_silent_duplicate(
    engine: AsyncEngine, connector_id: int
) -> None:
    await set_connector(engine, connector_id, allow_dm=False)
    admit, event = pipeline(engine).admit, dm()
    first = await admit(connector_id=connector_id, event=event, bot_open_id=None)
    second = await admit(connector_id=connector_id, event=event, bot_open_id=None)
    assert first.outcome is Outcome.FILTERED and first.reason is FilterReason.DM_DISABLED
    assert second.outcome is Outcome.DUPLICATE
    [row] = await inbox_rows(engine)
    assert row.status == InboundStatus.FILTERED.value and row.reason == FilterReason.DM_DISABLED.value
    assert await log_entries(engine) == [("ws_filtered", "dm_disabled")]  # one entry: the duplicate is silent


async def test_the_same_message_twice_in_one_batch_is_admitted_once(
    engine: AsyncEngine, connector_id: int
) -> None:
    admit, event = pipeline(engine).admit, dm("twice")
    outcomes = await asyncio.gather(
        *(admit(connector_id=connector_id, event=event, bot_open_id=None) for _ in "ab")
    )
    assert sorted(o.outcome for o in outcomes) == sorted([Outcome.ADMITTED, Outcome.DUPLICATE])
    assert len(await inbox_rows(engine)) == 1
    assert await log_entries(engine) == [("ws_routed", None)]


async def test_every_stop_but_a_duplicate_is_logged_with_its_reason(
    engine: AsyncEngine, connector_id: int
) -> None:
    admit = pipeline(engine).admit
    admissions = [
        await admit(connector_id=connector_id, event=dm(f"m{i}"), bot_open_id=None) for i in range(6)
    ]
    assert [a.outcome for a in admissions] == [Outcome.ADMITTED] * 5 + [Outcome.FILTERED]
    assert await log_entries(engine) == [("ws_routed", None)] * 5 + [("ws_filtered", "rate_limited")]
