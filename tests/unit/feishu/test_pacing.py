"""Pacing in advance (GCRA): the send times it hands out never break a sliding-window quota."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from echocenter.feishu.pacing import HEADROOM, Quota, per_minute, per_second, schedule
from tests.support.windows import most_in_any_window


def run(quotas_for: list[list[Quota]], arrivals: list[float]) -> list[float]:
    tats: dict[str, float] = {}
    sends = []
    for quotas, now in zip(quotas_for, arrivals, strict=True):
        at, new = schedule(tats, quotas, now)
        tats.update(new)
        sends.append(at)
    return sends


def test_a_per_second_quota_spaces_sends_evenly_below_the_quota() -> None:
    chat = per_second("chat:oc", 5)
    assert chat is not None
    sends = run([[chat]] * 60, [0.0] * 60)  # 60 at once
    gaps = {round(b - a, 6) for a, b in pairwise(sends)}
    assert gaps == {round(1 / (5 * HEADROOM), 6)}
    assert most_in_any_window(sends, 1.0) <= 5


def test_zero_turns_a_quota_off() -> None:
    assert per_second("chat:oc", 0) is None and per_minute("app:1:m", 0) is None


@settings(max_examples=30, deadline=None)
@given(
    bursts=st.lists(st.tuples(st.floats(0, 120), st.integers(1, 400)), min_size=1, max_size=6),
    chats=st.integers(1, 40),
)
def test_app_and_chat_quotas_hold_together_in_every_window(
    bursts: list[tuple[float, int]], chats: int
) -> None:
    app_s, app_m = per_second("app:s", 50), per_minute("app:m", 1000)
    assert app_s is not None and app_m is not None
    arrivals = sorted(t for start, n in bursts for t in [start] * n)
    chat_of = [f"chat:{i % chats}" for i in range(len(arrivals))]
    quotas = [[app_s, app_m, per_second(c, 5)] for c in chat_of]
    sends = run([[q for q in qs if q is not None] for qs in quotas], arrivals)
    assert all(s >= a for s, a in zip(sends, arrivals, strict=True))  # never before it was asked for
    assert most_in_any_window(sends, 1.0) <= 50
    assert most_in_any_window(sends, 60.0) <= 1000
    for chat in set(chat_of):
        assert most_in_any_window([s for s, c in zip(sends, chat_of, strict=True) if c == chat], 1.0) <= 5


def test_the_minute_quota_lets_a_burst_of_half_through_at_once() -> None:
    app_m = per_minute("app:m", 1000)
    assert app_m is not None
    sends = run([[app_m]] * 600, [0.0] * 600)
    assert sum(1 for s in sends if s == 0.0) == 500
    assert most_in_any_window(sends, 60.0) <= 1000
