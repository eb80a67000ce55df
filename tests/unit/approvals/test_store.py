"""store.decide: a decision happens exactly once — one conditional UPDATE — against a real SQLite file and a
real PostgreSQL schema; whoever comes second reads the stored decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.approvals import store
from echocenter.approvals.states import ApprovalStatus
from echocenter.errors import NotFound
from tests.support.databases import Database, migrated_sessions

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(database: Database) -> AsyncIterator[Sessions]:
    async with migrated_sessions(database) as made:
        yield made


async def pending(sessions: Sessions, *, ttl: timedelta = timedelta(minutes=10)) -> int:
    async with sessions() as session:
        approval = await store.create(
            session,
            connector_id=None,
            agent_name="web-1",
            command="uptime",
            reason="check load",
            requested_by_open_id="ou_alice",
            requested_by_name="Alice",
            chat_id="oc_ops",
            source_message_id="om_1",
            ttl=ttl,
        )
        return approval.id


async def decide(sessions: Sessions, approval_id: int, *, approve: bool, by: str) -> store.Decision:
    async with sessions() as session:  # a session of its own, as each click (or instance) has
        return await store.decide(session, approval_id=approval_id, approve=approve, decided_by=by)


async def test_the_first_decision_wins_and_is_stored(sessions: Sessions) -> None:
    approval_id = await pending(sessions)
    decision = await decide(sessions, approval_id, approve=True, by="ou_bob")
    assert decision.won and not decision.expired
    assert decision.approval.status == ApprovalStatus.APPROVED.value
    assert decision.approval.decided_by == "ou_bob" and decision.approval.decided_at is not None


async def test_a_second_click_reads_the_stored_decision_and_changes_nothing(sessions: Sessions) -> None:
    approval_id = await pending(sessions)
    await decide(sessions, approval_id, approve=False, by="ou_bob")
    again = await decide(sessions, approval_id, approve=True, by="ou_carol")
    assert not again.won
    assert again.approval.status == ApprovalStatus.REJECTED.value and again.approval.decided_by == "ou_bob"


async def test_simultaneous_clicks_make_exactly_one_decision(sessions: Sessions) -> None:
    approval_id = await pending(sessions)
    clickers = [(f"ou_{i}", i % 2 == 0) for i in range(8)]
    decisions = await asyncio.gather(
        *(decide(sessions, approval_id, approve=approve, by=who) for who, approve in clickers)
    )
    [winner] = [d for d in decisions if d.won]
    stored = {(d.approval.status, d.approval.decided_by) for d in decisions}
    assert stored == {(winner.approval.status, winner.approval.decided_by)}  # everyone sees the one decision


async def test_a_click_after_the_deadline_expires_the_request_once(sessions: Sessions) -> None:
    approval_id = await pending(sessions, ttl=timedelta(seconds=-1))
    first = await decide(sessions, approval_id, approve=True, by="ou_bob")
    second = await decide(sessions, approval_id, approve=True, by="ou_carol")
    assert not first.won and first.expired and first.expired_now
    assert not second.won and second.expired and not second.expired_now
    assert second.approval.status == ApprovalStatus.EXPIRED.value and second.approval.decided_by == "expiry"


async def test_an_approval_that_does_not_exist_is_not_found(sessions: Sessions) -> None:
    with pytest.raises(NotFound):
        await decide(sessions, 404, approve=True, by="ou_bob")
