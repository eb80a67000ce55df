"""Group commit: many callers' small writes done in one transaction, each caller awaiting its own result.

While one batch is in the database, new items queue up and form the next batch, so under light load every
item goes alone (no added latency) and under heavy load the per-transaction cost is shared. Writes nobody
waits on with a deadline (e.g. the inbox's state moves) can ``linger`` a little, to share a transaction
with more of their kind and leave the database to the writes an ack waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Batcher(Generic[Item, Outcome]):
    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome]]],
        *,
        max_batch: int = 200,
        linger: float = 0.0,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._linger = linger
        self._queue: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Outcome:
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Outcome]:
        """Take the item's place in the queue now (items are written in the order they were enqueued); the
        future holds its outcome once its batch is done."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        while self._queue:
            if self._linger:
                await asyncio.sleep(self._linger)
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                outcomes = await self._run([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._queue:
                    future.cancel()
                raise
            except Exception as exc:  # every waiter learns of the failure; none is left hanging
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
