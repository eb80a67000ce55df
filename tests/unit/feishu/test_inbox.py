"""The durable inbox: leases, re-drive, giving up — on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.contracts import InboundMessage
from echocenter.db.engine import make_engine
from echocenter.db.models import InboundMessage as InboundRow
from echocenter.db.models import InboundStatus
from echocenter.db.types import utcnow
from echocenter.feishu.inbound import InboundPipeline, Outcome
from echocenter.feishu.inbox import Inbox
from tests.support.databases import Database
from tests.support.events import dm
from tests.unit.feishu.conftest import inbox_rows

LEASE = timedelta(seconds=30)


@dataclass
class CountingButler:
    handled: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    fail_answers: bool = False

    async def handle(self, message: InboundMessage) -> None:
        self.handled.append(message.message_id)

    async def answer(self, message: InboundMessage) -> None:
        if self.fail_answers:
            raise RuntimeError("Feishu is away")
        self.answered.append(message.message_id)


def inbox(engine: AsyncEngine, owner: str, *, max_attempts: int = 5) -> Inbox:
    return Inbox(engine, owner=owner, lease=LEASE, retry_after=timedelta(0), max_attempts=max_attempts)


async def admitted(engine: AsyncEngine, connector_id: int, count: int) -> list[int]:
    """``count`` messages admitted by an instance that then died: their leases have run out."""
    pipeline = InboundPipeline(engine, lease=LEASE, owner="dead-instance")
    admissions = await asyncio.gather(
        *(
            pipeline.admit(connector_id=connector_id, event=dm(sender=f"ou_{i}"), bot_open_id=None)
            for i in range(count)
        )
    )
    assert all(a.outcome is Outcome.ADMITTED for a in admissions)
    async with engine.begin() as conn:
        await conn.execute(update(InboundRow).values(lease_until=utcnow() - timedelta(seconds=1)))
    return [a.row_id for a in admissions if a.row_id is not None]


async def sweep_and_wait(worker: Inbox, butler: CountingButler) -> int:
    """One sweep, and the drives it started run to their end."""
    tasks: list[asyncio.Future[object]] = []
    taken = await worker.sweep(butler, lambda work: tasks.append(asyncio.ensure_future(work)))
    await asyncio.gather(*tasks)
    return taken


async def test_two_instances_never_take_the_same_message(
    engine: AsyncEngine, connector_id: int, database: Database
) -> None:
    if database.backend == "sqlite":
        pytest.skip("SQLite means one instance (its single writer serialises the sweep anyway)")
    ids = await admitted(engine, connector_id, 30)
    other_engine = make_engine(database.url, schema=database.schema)
    try:
        first, second = await asyncio.gather(
            inbox(engine, "one").take_expired(limit=20), inbox(other_engine, "two").take_expired(limit=20)
        )
    finally:
        await other_engine.dispose()
    taken_once = [w.row_id for w in first] + [w.row_id for w in second]
    assert len(taken_once) == len(set(taken_once)) == 30 and set(taken_once) == set(ids)
    owners = {row.id: row.lease_owner for row in await inbox_rows(engine)}
    assert {owners[w.row_id] for w in first} == {"one"} and {owners[w.row_id] for w in second} == {"two"}
    assert await inbox(engine, "three").take_expired() == []  # every lease is held now


async def test_the_sweep_finishes_what_a_dead_instance_left_routed_without_taking_it_again(
    engine: AsyncEngine, connector_id: int
) -> None:
    await admitted(engine, connector_id, 1)
    async with engine.begin() as conn:
        await conn.execute(update(InboundRow).values(status=InboundStatus.ROUTED.value))
    butler, tasks = CountingButler(), []
    assert (
        await inbox(engine, "survivor").sweep(butler, lambda work: tasks.append(asyncio.ensure_future(work)))
        == 1
    )
    await asyncio.gather(*tasks)
    [row] = await inbox_rows(engine)
    assert row.status == InboundStatus.ANSWERED.value and row.finished_at is not None
    assert butler.handled == [] and len(butler.answered) == 1  # the turn was stored before the crash
    assert row.attempts == 2 and row.lease_until is None


async def test_a_message_that_keeps_failing_is_failed_with_a_reason(
    engine: AsyncEngine, connector_id: int
) -> None:
    await admitted(engine, connector_id, 1)
    worker = inbox(engine, "survivor", max_attempts=3)
    butler = CountingButler(fail_answers=True)
    for _ in range(3):
        await sweep_and_wait(worker, butler)
    [row] = await inbox_rows(engine)
    assert row.status == InboundStatus.FAILED.value
    assert row.reason == "not answered after 3 attempts; last error: RuntimeError: Feishu is away"
    assert butler.answered == []
