"""Conversation turns written in groups, and the recent turns of each conversation kept at hand.

Turns of many messages arriving together share one transaction (group commit, ``db/batching.py``): the
conversations they belong to (created on first contact, race-free), then the turns, each added once per key.
A conversation's id is remembered once known (a conversation is only ever deleted with its connector).

``Memory`` holds the newest turns of each conversation for the rule brain's history, so answering a message
does not read them back. The database stays the truth: the memory is only used where this instance is the
only writer of turns (SQLite means one instance), it is filled from the database on first use, it learns
each turn as it is written here, and a conversation is forgotten (read again next time) when a write fails.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from echocenter.butler.brains import Turn
from echocenter.contracts import InboundMessage
from echocenter.db.batching import Batcher
from echocenter.db.models import Conversation, ConversationTurn
from echocenter.db.types import utcnow

ConversationKey = tuple[int, str, str, str]  # connector, chat, person, thread
MAX_REMEMBERED_CONVERSATIONS = 10_000


def conversation_key(message: InboundMessage) -> ConversationKey:
    return (message.connector_id, message.chat_id, message.open_id, message.thread_key)


@dataclass(frozen=True, slots=True)
class NewTurn:
    """A turn to add; ``key`` ("user:<message_id>", "reply:<message_id>", …) makes a second add a no-op."""

    message: InboundMessage
    role: str
    text: str
    key: str


@dataclass(frozen=True, slots=True)
class _Remembered:
    key: str
    role: str
    content: str
    message_id: str


class Memory:
    """The newest turns per conversation (in the order they were written), within ``size`` each."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._turns: OrderedDict[int, deque[_Remembered]] = OrderedDict()

    def get(self, conversation_id: int) -> list[_Remembered] | None:
        turns = self._turns.get(conversation_id)
        if turns is None:
            return None
        self._turns.move_to_end(conversation_id)
        return list(turns)

    def fill(self, conversation_id: int, turns: Sequence[_Remembered]) -> None:
        self._turns[conversation_id] = deque(turns, maxlen=self._size)
        while len(self._turns) > MAX_REMEMBERED_CONVERSATIONS:
            self._turns.popitem(last=False)

    def add(self, conversation_id: int, turn: _Remembered) -> None:
        turns = self._turns.get(conversation_id)
        if turns is not None and all(t.key != turn.key for t in turns):
            turns.append(turn)

    def forget(self, conversation_id: int) -> None:
        self._turns.pop(conversation_id, None)


class Turns:
    """The Butler's conversation store: ids, turns written in groups, and (single writer) recent memory."""

    def __init__(self, engine: AsyncEngine, *, history: int, remember: bool, max_batch: int = 200) -> None:
        self._engine = engine
        self._history = history
        self._postgres = engine.dialect.name == "postgresql"
        self._ids: dict[ConversationKey, int] = {}
        self._memory = Memory(history + 1) if remember else None
        self._writes = Batcher(self._write_batch, max_batch=max_batch)

    async def add(self, turn: NewTurn) -> int:
        """Store the turn (once per key); its conversation's id comes back. Turns are written, and
        remembered, in the order they were added."""
        known = self._ids.get(conversation_key(turn.message))
        if known is not None:
            self.remember(known, turn)
        return await self._writes.submit(turn)

    async def conversation(self, message: InboundMessage) -> int:
        """The conversation's id, created on first contact."""
        known = self._ids.get(conversation_key(message))
        if known is not None:
            return known
        async with self._engine.begin() as conn:
            return (await self._ensure(conn, [conversation_key(message)]))[conversation_key(message)]

    def forget(self, conversation_id: int) -> None:
        """A write for this conversation may have failed: read its turns from the database next time."""
        if self._memory is not None:
            self._memory.forget(conversation_id)

    def remember(self, conversation_id: int, turn: NewTurn) -> None:
        """Learn a turn that is being written (its write is awaited elsewhere; a failure calls forget)."""
        if self._memory is not None:
            self._memory.add(conversation_id, _remembered(turn))

    async def history(self, conversation_id: int, before_message_id: str) -> list[Turn]:
        """The newest turns (up to the history setting) before this message's own, oldest first."""
        if self._history == 0:
            return []
        turns = self._memory.get(conversation_id) if self._memory is not None else None
        if turns is None:
            turns = await self._read(conversation_id)
            if self._memory is not None:
                self._memory.fill(conversation_id, turns)
        return [
            Turn(t.role, t.content)
            for t in turns[-(self._history + 1) :]
            if t.role in ("user", "assistant") and (t.message_id != before_message_id or t.role != "user")
        ]

    async def _read(self, conversation_id: int) -> list[_Remembered]:
        t = ConversationTurn
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.turn_key, t.role, t.content, t.message_id)
                    .where(t.conversation_id == conversation_id)
                    .order_by(t.id.desc())
                    .limit(self._history + 1)
                )
            ).all()
        return [_Remembered(k or "", r, c, m) for k, r, c, m in reversed(rows)]

    async def _ensure(
        self, conn: AsyncConnection, keys: Sequence[ConversationKey]
    ) -> dict[ConversationKey, int]:
        missing = sorted({k for k in keys if k not in self._ids})
        if missing:
            now = utcnow()
            insert = (pg_insert if self._postgres else sqlite_insert)(Conversation).on_conflict_do_nothing(
                index_elements=["connector_id", "chat_id", "open_id", "thread_id"]
            )
            await conn.execute(
                insert,
                [
                    {
                        "connector_id": c,
                        "chat_id": ch,
                        "open_id": o,
                        "thread_id": th,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for c, ch, o, th in missing
                ],
            )
            v = Conversation
            columns = (v.connector_id, v.chat_id, v.open_id, v.thread_id)
            rows = await conn.execute(select(v.id, *columns).where(tuple_(*columns).in_(missing)))
            found = {(c, ch, o, th): i for i, c, ch, o, th in rows}
            ids = {k: found[k] if k in found else self._ids[k] for k in keys}
            if len(self._ids) + len(found) > MAX_REMEMBERED_CONVERSATIONS:
                self._ids.clear()
            self._ids.update(found)
            return ids
        return {k: self._ids[k] for k in keys}

    async def _write_batch(self, turns: Sequence[NewTurn]) -> list[int]:
        keys = [conversation_key(t.message) for t in turns]
        try:
            async with self._engine.begin() as conn:
                ids = await self._ensure(conn, keys)
                insert = (pg_insert if self._postgres else sqlite_insert)(ConversationTurn)
                now = utcnow()
                rows: list[dict[str, Any]] = [
                    {
                        "conversation_id": ids[key],
                        "role": t.role,
                        "content": t.text,
                        "message_id": t.message.message_id if t.role == "user" else "",
                        "turn_key": t.key,
                        "created_at": now,
                    }
                    for t, key in zip(turns, keys, strict=True)
                ]
                # In the order they came: a conversation's turns keep their order (ids ascend).
                await conn.execute(
                    insert.on_conflict_do_nothing(index_elements=["conversation_id", "turn_key"]), rows
                )
        except Exception:
            for key in keys:
                if key in self._ids:
                    self.forget(self._ids[key])
            raise
        return [ids[key] for key in keys]


def _remembered(turn: NewTurn) -> _Remembered:
    message_id = turn.message.message_id if turn.role == "user" else ""
    return _Remembered(turn.key, turn.role, turn.text, message_id)
