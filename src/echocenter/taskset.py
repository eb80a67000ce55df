"""Background tasks kept referenced until they finish, with every failure logged.

asyncio holds only a weak reference to a task, so a task nobody keeps may be collected mid-flight, and an
exception nobody reads is lost. The app, the Feishu bridge and each long connection hold their background
work in a ``TaskSet``; ``stop`` cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ["TaskSet"]

log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self, owner: str = "app") -> None:
        self._owner = owner  # named in the log line of a failed task
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, name: str, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background under a name (the log names it if it fails)."""
        self._track(coro).set_name(name)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background."""
        self._track(coro)

    def _track(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            fields = {"owner": self._owner, "task": task.get_name()}
            log.error("background_task_failed", exc_info=error, extra={"fields": fields})

    async def stop(self) -> None:
        """Cancel every task still running and wait until they are all gone."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
