"""Group commit (db/batching.Batcher): callers who arrive while a batch is in the database form the next one,
each gets its own outcome in order, a failure reaches every caller of its batch and no other, and nothing
queued is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from echocenter.db.batching import Batcher


class Recorder:
    """A ``run`` that records its batches and holds each one until the test lets it go."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = asyncio.Event()  # a batch is in the "database"
        self.release = asyncio.Event()
        self.fail_on = fail_on

    async def run(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.entered.set()
        await self.release.wait()
        if self.fail_on in items:
            raise RuntimeError(f"the database refused {self.fail_on}")
        return [item.upper() for item in items]


async def test_an_item_alone_goes_alone_at_once() -> None:
    recorder = Recorder()
    recorder.release.set()
    assert await Batcher(recorder.run).submit("a") == "A"
    assert recorder.batches == [["a"]]


async def test_callers_who_arrive_during_a_batch_form_the_next_one_in_order() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    first = asyncio.ensure_future(batcher.submit("a"))
    await recorder.entered.wait()
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in "bcd"]
    recorder.release.set()
    assert await asyncio.gather(first, *rest) == ["A", "B", "C", "D"]  # each caller its own outcome
    assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_a_batch_is_never_larger_than_max_batch() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=2)
    waiting = [asyncio.ensure_future(batcher.submit(item)) for item in "abcde"]
    recorder.release.set()
    assert await asyncio.gather(*waiting) == list("ABCDE")
    assert recorder.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failure_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs() -> None:
    recorder = Recorder(fail_on="b")
    batcher = Batcher(recorder.run, max_batch=2)
    waiting = [asyncio.ensure_future(batcher.submit(item)) for item in "abc"]
    recorder.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert [str(o) for o in outcomes[:2]] == ["the database refused b"] * 2
    assert all(isinstance(o, RuntimeError) for o in outcomes[:2])
    assert outcomes[2] == "C"
    assert recorder.batches == [["a", "b"], ["c"]]


async def test_a_new_item_after_the_queue_ran_dry_starts_a_new_batch() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.run)
    assert await batcher.submit("a") == "A"
    assert await batcher.submit("b") == "B"
    assert recorder.batches == [["a"], ["b"]]


async def test_lingering_gathers_callers_who_arrive_a_little_later() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.run, linger=0.3)
    first = asyncio.ensure_future(batcher.submit("a"))
    later: asyncio.Future[asyncio.Future[str]] = asyncio.get_running_loop().create_future()
    # The second caller comes while the first lingers (without linger it would go in a batch of its own).
    asyncio.get_running_loop().call_later(
        0.02, lambda: later.set_result(asyncio.ensure_future(batcher.submit("b")))
    )
    assert await asyncio.gather(first, await later) == ["A", "B"]
    assert recorder.batches == [["a", "b"]]
