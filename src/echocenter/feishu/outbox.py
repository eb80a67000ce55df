"""The durable outbox: every reply, card and card update is a row before it goes to Feishu.

- **Order per chat.** Rows of one lane (a chat; for a card PATCH, the card) go out one at a time in id order:
  only a lane's oldest pending row can be claimed, and only once nobody holds it.
- **Paced in advance** (feishu/pacing.py) at Feishu's quotas, per app, per chat and per card PATCHed.
- **Never lost.** A row stays pending until Feishu accepted it or answered a permanent error (logged as
  ``ws_outbound`` with Feishu's code and message). Rate limits, 5xx, timeouts: tried again later, forever
  (capped backoff, or Feishu's ``x-ogw-ratelimit-reset``). A sender loop picks rows up at start, after an
  enqueue on this instance, and by polling (rows written or released by other instances).
- **Never twice.** A row is leased before it is sent (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` while leasing),
  and every create carries the row's Feishu ``uuid``, so a second attempt after a crash, a lost lease or a
  lost answer is answered with the first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import uuid as uuid_lib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, delete, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from echocenter import metrics
from echocenter.db.batching import Batcher
from echocenter.db.models import LogLevel, OutboxMessage, OutboxPacing, OutboxStatus
from echocenter.db.types import utcnow
from echocenter.errors import UpstreamError
from echocenter.feishu.openapi import RATE_LIMIT_CODES, TOKEN_INVALID_CODES, FeishuError, OpenApiClient
from echocenter.feishu.pacing import MemoryPacer, PostgresPacer, Quota, per_minute, per_second
from echocenter.integration_logs.service import LogAction, record

log = logging.getLogger(__name__)

# A sender that vanished (kill -9) frees its rows after this; the lane (a chat) waits that long, so keep it
# short. Above FEISHU_HTTP_TIMEOUT (one send), and renewed while a row waits for pacing or the database.
LEASE_SECONDS = 15.0
POLL_SECONDS = 1.0  # how often rows written or released elsewhere are looked for
WAIT_POLL_SECONDS = (
    5.0  # PostgreSQL: how often a waiting caller re-reads its row (another instance may send it)
)
MAX_IN_FLIGHT = 500
LANE_RUN = 50  # rows of one lane leased at a time (sent one after another)
MAX_BACKOFF_SECONDS = 30.0
CLAIM_COALESCE_SECONDS = 0.02
MAX_RETRY_HOLD_SECONDS = 2.0  # a row whose delivery broke on the database is tried again at least this often


class Clients(Protocol):
    def openapi(self, connector_id: int) -> OpenApiClient | None: ...


@dataclass(frozen=True, slots=True)
class NewRow:
    connector_id: int
    kind: str  # text | card | card_update
    lane: str
    content: str
    uuid: str
    chat_id: str = ""
    target_message_id: str = ""  # reply_to, or the card to PATCH
    msg_type: str = ""
    receive_id_type: str = "chat_id"  # chat_id names a chat; open_id a person (a DM)
    in_thread: bool = False  # a reply to a message in a thread stays in that thread


class OutboxFailed(UpstreamError):
    """A row ended on a permanent Feishu error (its code and message are in the text and the log)."""


@dataclass(frozen=True, slots=True)
class PacingLimits:
    per_app_qps: float = 50
    per_app_per_minute: int = 1000
    per_chat_qps: float = 5
    per_message_patch_qps: float = 5


def chat_lane(chat_id: str) -> str:
    return f"chat:{chat_id}"


def card_lane(message_id: str) -> str:
    return f"message:{message_id}"


def _retryable(exc: FeishuError) -> bool:
    if exc.kind in ("timeout", "network"):
        return True
    status = exc.http_status or 0
    return status >= 500 or status == 429 or exc.feishu_code in RATE_LIMIT_CODES | TOKEN_INVALID_CODES


def _free(now: datetime) -> Any:
    return or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)


def _describe(exc: FeishuError) -> str:
    return f"{exc.message} [feishu_code={exc.feishu_code} feishu_msg={exc.feishu_msg}]"


class Outbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clients: Clients,
        *,
        limits: PacingLimits,
        dialect: str,
        instance_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._clients = clients
        self._limits = limits
        self._postgres = dialect == "postgresql"
        self._pacer: MemoryPacer | PostgresPacer = (
            PostgresPacer(sessions) if self._postgres else MemoryPacer()
        )
        self.instance_id = instance_id or uuid_lib.uuid4().hex
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()  # one task per lane being drained
        self._waiters: dict[int, asyncio.Future[tuple[bool, str]]] = {}  # (sent?, message id or error)
        self._claims = itertools.count(1)
        self._loop_task: asyncio.Task[None] | None = None
        self._unsure_tokens: set[str] = set()  # claims a database error interrupted (see _lease)
        self._writes = Batcher(self._write_batch)
        self._marks = Batcher(self._mark_batch)
        self._draining: dict[tuple[int, str], int] = {}  # lanes being drained here (how many drains)

    # --- writing and waiting ------------------------------------------------------------------------
    async def enqueue(self, rows: Sequence[NewRow]) -> list[int]:
        """Write the rows (in order, one transaction); a uuid already there is not written twice."""
        return await self.queue(rows)

    def queue(self, rows: Sequence[NewRow]) -> asyncio.Future[list[int]]:
        """Like ``enqueue``, but the rows take their place in their lanes' order now; the future holds their
        ids once written. Rows queued together share a transaction (group commit)."""
        return self._writes.enqueue(list(rows))

    async def _write_batch(self, groups: Sequence[list[NewRow]]) -> list[list[int]]:
        now = utcnow()
        rows = [row for group in groups for row in group]
        insert = (pg_insert if self._postgres else sqlite_insert)(OutboxMessage)
        values = [_insert_values(row, now) for row in rows]
        o = OutboxMessage
        async with self._sessions() as session:
            # In the order queued (multi-row VALUES): ids, and so each lane's order, follow it.
            inserted = await session.execute(
                insert.on_conflict_do_nothing(index_elements=["connector_id", "uuid"]).returning(
                    o.id, o.connector_id, o.uuid
                ),
                values,
            )
            ids = {(c, u): i for i, c, u in inserted}
            earlier = [(r.connector_id, r.uuid) for r in rows if (r.connector_id, r.uuid) not in ids]
            fresh = set(ids.values())
            if earlier:  # written before (a re-driven message): the existing rows stand
                found = await session.execute(
                    select(o.id, o.connector_id, o.uuid).where(tuple_(o.connector_id, o.uuid).in_(earlier))
                )
                ids.update({(c, u): i for i, c, u in found})
            loop = asyncio.get_running_loop()
            for row_id in fresh:  # told when sent by this instance's sender (which cannot see them yet)
                self._waiters.setdefault(row_id, loop.create_future())
            try:
                await session.commit()
            except BaseException:
                for row_id in fresh:
                    self._waiters.pop(row_id, None)
                raise
        if any((r.connector_id, r.lane) not in self._draining for r in rows):
            self._wake.set()  # a lane being drained picks its new rows up itself (``_next_run``)
        return [[ids[(r.connector_id, r.uuid)] for r in group] for group in groups]

    async def wait_sent(self, row_ids: Sequence[int]) -> list[str]:
        """Feishu's message id for each row once sent. Raises OutboxFailed on a permanent error."""
        return [await self._wait_one(row_id) for row_id in row_ids]

    async def _wait_one(self, row_id: int) -> str:
        loop = asyncio.get_running_loop()
        queued_here = self._waiters.get(row_id)
        if queued_here is not None and not self._postgres:
            # Written by this instance and not yet sent: its sender (the only one on SQLite) will tell.
            sent, value = await asyncio.shield(queued_here)
            if not sent:
                raise OutboxFailed(value or "permanent error")
            return value
        while True:
            future = self._waiters.get(row_id)
            if future is None or future.done():
                future = self._waiters[row_id] = loop.create_future()
            async with self._sessions() as session:
                row = await session.get(OutboxMessage, row_id, populate_existing=True)
            if row is None:
                raise OutboxFailed(f"outbox row {row_id} is gone (its connector was deleted)")
            if row.status != OutboxStatus.PENDING.value:
                self._waiters.pop(row_id, None)
                outcome = (row.status == OutboxStatus.SENT.value, row.sent_message_id or row.error or "")
            else:
                # Told by this instance's sender. With PostgreSQL another instance may send it: re-read now
                # and then. SQLite has one instance, whose sender always tells.
                try:
                    outcome = await asyncio.wait_for(
                        asyncio.shield(future), WAIT_POLL_SECONDS if self._postgres else None
                    )
                except TimeoutError:
                    continue
            sent, value = outcome
            if not sent:
                raise OutboxFailed(value or "permanent error")
            return value

    def _finished(self, row_id: int, sent: bool, value: str) -> None:
        future = self._waiters.pop(row_id, None)
        if future is not None and not future.done():
            future.set_result((sent, value))

    # --- the sender loop ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # give the rows back at once rather than after the lease
            async with self._sessions() as session:
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.lease_owner.startswith(f"{self.instance_id}:"),
                        OutboxMessage.status == OutboxStatus.PENDING.value,
                    )
                    .values(lease_owner=None, lease_until=None)
                )
                await session.commit()

    async def _run(self) -> None:
        if not self._postgres:
            await self._release_all_leases()  # SQLite: one instance, so any lease is a dead process's
        pruned_at = 0.0
        while True:
            self._wake.clear()
            try:
                await self._release_unsure()
                for row in await self._claim(MAX_IN_FLIGHT - len(self._in_flight)):
                    task = asyncio.create_task(self._drain_lane(row), name=f"outbox-lane-{row.id}")
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                if self._postgres and time.monotonic() - pruned_at > 600:
                    pruned_at = time.monotonic()
                    await self._prune_pacing()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_claim_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            await asyncio.sleep(CLAIM_COALESCE_SECONDS)  # one claim for the rows written meanwhile

    async def _release_all_leases(self) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.status == OutboxStatus.PENDING.value, OutboxMessage.lease_owner.is_not(None)
                )
                .values(lease_owner=None, lease_until=None)
            )
            await session.commit()

    async def _prune_pacing(self) -> None:
        async with self._sessions() as session:
            await session.execute(delete(OutboxPacing).where(OutboxPacing.tat < time.time() - 3600))
            await session.commit()

    def _heads(self, now: datetime) -> Any:
        """Pending rows due now, held by nobody, with no older pending row in their lane."""
        o, earlier = OutboxMessage, aliased(OutboxMessage)
        head_of_lane = ~exists().where(
            earlier.connector_id == o.connector_id,
            earlier.lane == o.lane,
            earlier.status == OutboxStatus.PENDING.value,
            earlier.id < o.id,
        )
        return select(o.id).where(
            o.status == OutboxStatus.PENDING.value, o.next_attempt_at <= now, _free(now), head_of_lane
        )

    async def _claim(self, room: int) -> list[OutboxMessage]:
        """Lease the head of every lane that is due and held by nobody."""
        if room <= 0:
            return []
        now = utcnow()
        return await self._lease(self._heads(now).order_by(OutboxMessage.id).limit(room), now)

    async def _lease(self, query: Any, now: datetime) -> list[OutboxMessage]:
        """Lease the rows ``query`` selects under a token of this claim alone, so no row is taken twice, not
        even by two claims of one instance."""
        o = OutboxMessage
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=o)
        token = f"{self.instance_id}:{next(self._claims)}"
        # Until the rows are read back, a broken connection leaves it unknown whether the lease was written:
        # the token is kept and its rows are given back once the database answers (not after LEASE_SECONDS).
        async with self._sessions() as session:
            ids = list(await session.scalars(query))
            if not ids:
                await session.rollback()
                return []
            try:
                await session.execute(
                    update(o)
                    .where(o.id.in_(ids), o.status == OutboxStatus.PENDING.value, _free(now))
                    .values(lease_owner=token, lease_until=now + timedelta(seconds=LEASE_SECONDS))
                )
                rows = list(
                    await session.scalars(
                        select(o)
                        .where(o.id.in_(ids), o.lease_owner == token)
                        .order_by(o.id)
                        .execution_options(populate_existing=True)
                    )
                )
                await session.commit()
            except BaseException:
                self._unsure_tokens.add(token)
                raise
        return rows

    async def _release_unsure(self) -> None:
        """Give back the rows of claims whose outcome a database error hid (nobody here is sending them)."""
        if not self._unsure_tokens:
            return
        tokens = sorted(self._unsure_tokens)
        async with self._sessions() as session:
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.lease_owner.in_(tokens), OutboxMessage.status == OutboxStatus.PENDING.value
                )
                .values(lease_owner=None, lease_until=None)
            )
            await session.commit()
        self._unsure_tokens.difference_update(tokens)

    def _quotas(self, row: OutboxMessage) -> list[Quota]:
        limits = self._limits
        app = f"app:{row.connector_id}"
        if row.kind == "card_update":
            quotas = [
                per_second(f"patch:{row.connector_id}:{row.target_message_id}", limits.per_message_patch_qps)
            ]
        else:
            quotas = [
                per_second(f"{app}:s", limits.per_app_qps),
                per_minute(f"{app}:m", limits.per_app_per_minute),
                per_second(f"chat:{row.chat_id}", limits.per_chat_qps),
            ]
        return [q for q in quotas if q is not None]

    async def _drain_lane(self, row: OutboxMessage | None) -> None:
        """Send the lane's rows one after another while they are due and nobody else holds them.

        Rows are leased a run at a time (``LANE_RUN``) and each is sent as soon as Feishu took the one before;
        marking them sent shares transactions (group commit) and is only awaited before the next run is
        leased (a lane's next rows are free once the ones before are settled).
        A row whose delivery broke on the database (away, or a connection cut mid-way) is still ours: it is
        tried again here once the database answers, rather than left under its lease until that runs out —
        the lease would hold up its whole lane (every later reply in the chat) for ``LEASE_SECONDS``."""
        if row is None:
            return
        lane = (row.connector_id, row.lane)
        self._draining[lane] = self._draining.get(lane, 0) + 1
        failures = 0
        ahead: list[OutboxMessage] = []
        marking: list[asyncio.Task[None]] = []
        try:
            while row is not None:
                done = await self._deliver(row, marking)
                if done is None:
                    failures += 1
                    if not await self._hold_again(row, failures):
                        # Settled after all (a commit whose answer was lost), or taken by another sender once
                        # the lease ran out (it sends it). A waiter here is told if it is settled.
                        await self._tell_if_settled(row.id)
                        return
                    continue
                if not done:
                    return
                failures = 0
                if ahead:
                    row = ahead.pop(0)
                    continue
                await asyncio.gather(*marking)
                marking.clear()
                row = await self._next_run(row, ahead)
        finally:
            self._draining[lane] -= 1
            if not self._draining[lane]:
                del self._draining[lane]
                self._wake.set()  # rows written as the lane ran dry are claimed by the sender loop
            await asyncio.gather(*marking, return_exceptions=True)
            if ahead:  # not sent by this run (a row before them waits): free for whoever comes next
                with contextlib.suppress(Exception):
                    await self._release([r.id for r in ahead])

    async def _next_run(self, row: OutboxMessage, ahead: list[OutboxMessage]) -> OutboxMessage | None:
        """Lease the lane's next rows (those due and free, in order); the first comes back, the rest go
        ``ahead``. None when there are none (or the database failed: the sender loop claims them later)."""
        o, now = OutboxMessage, utcnow()
        try:
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(o.id, o.next_attempt_at, o.lease_until)
                        .where(
                            o.status == OutboxStatus.PENDING.value,
                            o.connector_id == row.connector_id,
                            o.lane == row.lane,
                        )
                        .order_by(o.id)
                        .limit(LANE_RUN)
                    )
                ).all()
            run: list[int] = []
            for row_id, due, lease_until in rows:  # in order, up to the first that must wait
                if due > now or (lease_until is not None and lease_until >= now):
                    break
                run.append(row_id)
            leased = await self._lease(select(o.id).where(o.id.in_(run)), now) if run else []
        except asyncio.CancelledError:
            raise
        except Exception:  # the sender loop claims the lane's next row on its next poll
            log.exception("outbox_claim_failed lane=%s", row.lane)
            return None
        if [r.id for r in leased] != run[: len(leased)]:  # some were taken meanwhile: keep the order
            await self._release([r.id for r in leased])
            return None
        ahead.extend(leased[1:])
        return leased[0] if leased else None

    async def _release(self, row_ids: Sequence[int]) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(row_ids), OutboxMessage.status == OutboxStatus.PENDING.value)
                .values(lease_owner=None, lease_until=None)
            )
            await session.commit()
        self._wake.set()

    async def _hold_again(self, row: OutboxMessage, failures: int) -> bool:
        """Wait (capped backoff) until the database answers again, renewing the row's lease. False when the
        row is no longer this claim's (its lease ran out and another sender took it, or it was settled)."""
        while True:
            await asyncio.sleep(min(MAX_RETRY_HOLD_SECONDS, 0.25 * 2.0 ** min(failures - 1, 6)))
            try:
                return await self._extend_lease(row, LEASE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("outbox_lease_not_renewed outbox_id=%s (database away)", row.id)

    async def _tell_if_settled(self, row_id: int) -> None:
        with contextlib.suppress(Exception):
            async with self._sessions() as session:
                row = await session.get(OutboxMessage, row_id, populate_existing=True)
            if row is not None and row.status != OutboxStatus.PENDING.value:
                sent = row.status == OutboxStatus.SENT.value
                self._finished(row_id, sent, (row.sent_message_id if sent else row.error) or "")

    async def _deliver(self, row: OutboxMessage, marking: list[asyncio.Task[None]]) -> bool | None:
        """Send one row. True when it is done with (sent, or failed for good): its lane may go on. False when
        it waits for a later attempt (released with its backoff). None when the database failed on the way:
        the row is still leased by this claim and should be tried again as soon as the database is back."""
        try:
            send_at = await self._pacer.reserve(self._quotas(row))
            delay = send_at - time.time()
            if delay > LEASE_SECONDS / 2:
                await self._extend_lease(row, delay + LEASE_SECONDS)
            if delay > 0:
                await asyncio.sleep(delay)
            client = self._clients.openapi(row.connector_id)
            if client is None:
                await self._give_up(row, "the connector has no credentials to send with", detail={})
                return True
            try:
                data = await self._send(client, row)
            except FeishuError as exc:
                if _retryable(exc):
                    await self._retry_later(row, exc)
                    return False
                await self._give_up(row, _describe(exc), detail=exc.detail())
                return True
            sent_id = str(data.get("message_id", "")) or row.target_message_id
            marking.append(asyncio.create_task(self._mark_sent(row, sent_id)))
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox_deliver_failed outbox_id=%s", row.id)  # tried again by _drain_lane
            return None

    async def _send(self, client: OpenApiClient, row: OutboxMessage) -> dict[str, Any]:
        if row.kind == "card_update":
            return await client.call(
                "PATCH",
                f"/open-apis/im/v1/messages/{row.target_message_id}",
                json={"content": row.content},
                attempts=1,
            )
        body: dict[str, Any] = {"msg_type": row.msg_type, "content": row.content, "uuid": row.uuid}
        if row.target_message_id:
            if row.reply_in_thread:
                body["reply_in_thread"] = True
            return await client.call(
                "POST", f"/open-apis/im/v1/messages/{row.target_message_id}/reply", json=body, attempts=1
            )
        return await client.call(
            "POST",
            "/open-apis/im/v1/messages",
            params={"receive_id_type": row.receive_id_type},
            json={**body, "receive_id": row.chat_id},
            attempts=1,
        )

    async def _extend_lease(self, row: OutboxMessage, seconds: float) -> bool:
        """False when the row is no longer this claim's (or no longer pending)."""
        async with self._sessions() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(self._mine(row), OutboxMessage.status == OutboxStatus.PENDING.value)
                .values(lease_until=utcnow() + timedelta(seconds=seconds))
            )
            await session.commit()
        return bool(getattr(result, "rowcount", 1))

    async def _settle(
        self,
        row: OutboxMessage,
        where: Any,
        values: dict[str, Any],
        *,
        ok: bool,
        level: LogLevel,
        **detail: Any,
    ) -> bool:
        """Move the row and write its ``ws_outbound`` entry in one transaction (a stop between the two
        would leave a sent reply without its log entry). False when the row was no longer ours to move."""
        async with self._sessions() as session:
            moved = await _move(session, row, where, values, ok=ok, level=level, **detail)
            await session.commit()
        return moved

    def _mine(self, row: OutboxMessage) -> Any:
        return and_(OutboxMessage.id == row.id, OutboxMessage.lease_owner == row.lease_owner)

    async def _mark_sent(self, row: OutboxMessage, message_id: str) -> None:
        """Feishu took it: the row is sent, with its ``ws_outbound`` entry (rows sent together share a
        transaction). While the database is away it is tried again; the lane waits for it."""
        failures = 0
        while True:
            try:
                moved = await self._marks.submit((row, message_id))
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # pending meanwhile: should another sender take it, its uuid finds this send
                failures += 1
                log.warning("outbox_mark_sent_failed outbox_id=%s (database away)", row.id)
                await asyncio.sleep(min(MAX_RETRY_HOLD_SECONDS, 0.25 * 2.0 ** min(failures - 1, 6)))
        if moved:
            metrics.OUTBOX_SENT.labels(row.kind).inc()
            metrics.OUTBOX_SEND_LATENCY.observe((utcnow() - row.created_at).total_seconds())
        self._finished(row.id, True, message_id)

    async def _mark_batch(self, sent: Sequence[tuple[OutboxMessage, str]]) -> list[bool]:
        now = utcnow()
        async with self._sessions() as session:
            moved = []
            for row, message_id in sent:
                attempts = row.attempts + 1
                # Not only while leased: Feishu took it, so it is sent, whoever holds the row now.
                still_pending = and_(
                    OutboxMessage.id == row.id, OutboxMessage.status == OutboxStatus.PENDING.value
                )
                values = {
                    "status": OutboxStatus.SENT.value,
                    "sent_message_id": message_id,
                    "sent_at": now,
                    "attempts": attempts,
                }
                detail = {} if row.kind == "card_update" else {"message_id": message_id}  # a PATCH's: about
                moved.append(
                    await _move(
                        session,
                        row,
                        still_pending,
                        values,
                        ok=True,
                        level=LogLevel.INFO,
                        attempts=attempts,
                        **detail,
                    )
                )
            await session.commit()
        return moved

    async def _retry_later(self, row: OutboxMessage, exc: FeishuError) -> None:
        attempts = row.attempts + 1
        reset = exc.extra.get("ratelimit_reset")
        try:
            delay = float(reset) if reset is not None else -1.0
        except ValueError:
            delay = -1.0
        if delay < 0:
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2.0 ** min(attempts - 1, 10)) * random.uniform(0.5, 1.0)
        values = {
            "attempts": attempts,
            "next_attempt_at": utcnow() + timedelta(seconds=delay),
            "error": _describe(exc),
        }
        await self._settle(
            row,
            self._mine(row),
            values,
            ok=False,
            level=LogLevel.WARN,
            retry_in_seconds=round(delay, 2),
            attempts=attempts,
            **exc.detail(),
        )
        self._wake.set()

    async def _give_up(self, row: OutboxMessage, error: str, *, detail: dict[str, Any]) -> None:
        values = {"status": OutboxStatus.FAILED.value, "attempts": row.attempts + 1, "error": error}
        if await self._settle(
            row,
            self._mine(row),
            values,
            ok=False,
            level=LogLevel.ERROR,
            error=error,
            permanent=True,
            **detail,
        ):
            metrics.OUTBOX_FAILED.labels(row.kind).inc()
        self._finished(row.id, False, error)

    async def sent_message_id(self, connector_id: int, uuid: str) -> str | None:
        """Feishu's id of the message sent for ``uuid``, once sent (e.g. by the sender after a restart)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(OutboxMessage.sent_message_id).where(
                    OutboxMessage.connector_id == connector_id,
                    OutboxMessage.uuid == uuid,
                    OutboxMessage.status == OutboxStatus.SENT.value,
                )
            )

    # --- what /metrics shows ------------------------------------------------------------------------
    async def backlog(self) -> tuple[int, float]:
        """Rows waiting, and the age in seconds of the oldest of them (0 when none)."""
        pending = OutboxMessage.status == OutboxStatus.PENDING.value
        async with self._sessions() as session:
            count = await session.scalar(select(func.count()).where(pending))
            oldest = await session.scalar(
                select(OutboxMessage.created_at).where(pending).order_by(OutboxMessage.id).limit(1)
            )
        if not count or oldest is None:
            return 0, 0.0
        return int(count), max(0.0, (utcnow() - oldest).total_seconds())


async def _move(
    session: AsyncSession,
    row: OutboxMessage,
    where: Any,
    values: dict[str, Any],
    *,
    ok: bool,
    level: LogLevel,
    **detail: Any,
) -> bool:
    """Move the row (giving up its lease) and add its ``ws_outbound`` entry, in the caller's transaction.
    False when the row was no longer there to move."""
    result = await session.execute(
        update(OutboxMessage).where(where).values(lease_owner=None, lease_until=None, **values)
    )
    moved = bool(getattr(result, "rowcount", 1))
    if moved:
        record(
            session,
            connector_id=row.connector_id,
            action=LogAction.WS_OUTBOUND,
            level=level,
            ok=ok,
            **_about(row),
            **detail,
        )
    return moved


def _about(row: OutboxMessage) -> dict[str, Any]:
    """What a row's ``ws_outbound`` entry says it was."""
    about: dict[str, Any] = {"kind": row.kind, "outbox_id": row.id}
    if row.kind == "card_update":
        about["message_id"] = row.target_message_id
    else:
        about.update(chat_id=row.chat_id, reply_to=row.target_message_id or None)
    return about


async def prune_outbox(session: AsyncSession, *, max_age: timedelta) -> int:
    """Forget sent and failed rows older than ``max_age`` (pending ones are kept whatever their age)."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.status != OutboxStatus.PENDING.value, OutboxMessage.created_at < utcnow() - max_age
        )
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def text_content(text: str) -> str:
    return json.dumps({"text": text}, ensure_ascii=False)


def card_content(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def _insert_values(row: NewRow, now: datetime) -> dict[str, Any]:
    """The columns of a new pending row."""
    return {
        "connector_id": row.connector_id,
        "lane": row.lane,
        "kind": row.kind,
        "chat_id": row.chat_id,
        "target_message_id": row.target_message_id,
        "msg_type": row.msg_type,
        "receive_id_type": row.receive_id_type,
        "reply_in_thread": row.in_thread,
        "content": row.content,
        "uuid": row.uuid,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
