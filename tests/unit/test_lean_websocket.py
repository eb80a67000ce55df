"""The lean receive queue and writable flag that replace asyncio.Queue/Event in agent sockets."""

from __future__ import annotations

import asyncio

from echocenter.lean_websocket import _Gate, _Mailbox


async def test_the_mailbox_hands_over_in_order_and_waits_when_empty() -> None:
    box = _Mailbox()
    box.put_nowait(1)
    box.put_nowait(2)
    assert not box.empty()
    assert [await box.get(), await box.get()] == [1, 2] and box.empty()
    waiting = asyncio.ensure_future(box.get())
    done, _ = await asyncio.wait([waiting], timeout=0.02)
    assert not done  # empty: it waits
    box.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3


async def test_the_gate_holds_senders_while_cleared_and_lets_all_through_when_set() -> None:
    gate = _Gate()
    await asyncio.wait_for(gate.wait(), 1)  # open: no wait
    gate.clear()
    assert not gate.is_set()
    senders = [asyncio.ensure_future(gate.wait()) for _ in range(3)]
    done, _ = await asyncio.wait(senders, timeout=0.02)
    assert not done  # cleared: they are held
    gate.set()
    await asyncio.wait_for(asyncio.gather(*senders), 1)
    assert gate.is_set()
