"""TaskSet: background work is held until done, a failure is logged with its name, stop cancels the rest."""

from __future__ import annotations

import asyncio
import logging

import pytest

from echocenter.taskset import TaskSet
from tests.support.waiting import eventually


async def test_a_failure_is_logged_with_its_owner_and_name(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("bridge")

    async def boom() -> None:
        raise ValueError("lost otherwise")

    with caplog.at_level(logging.ERROR, logger="echocenter.taskset"):
        tasks.start("sweeper", boom())

        async def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage() == "background_task_failed"]

        [record] = await eventually(logged)
    assert record.fields == {"owner": "bridge", "task": "sweeper"}  # type: ignore[attr-defined]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert len(tasks) == 0


async def test_finished_tasks_are_let_go_and_stop_cancels_the_rest() -> None:
    tasks = TaskSet()
    done = asyncio.Event()
    cancelled = asyncio.Event()

    async def quick() -> None:
        done.set()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    tasks.spawn(quick())
    tasks.spawn(forever())
    await done.wait()

    async def one_left() -> bool:
        return len(tasks) == 1

    await eventually(one_left)
    await tasks.stop()
    assert cancelled.is_set() and len(tasks) == 0
