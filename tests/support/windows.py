"""Checking send times against a sliding-window quota."""

from __future__ import annotations

from bisect import bisect_left


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any one ``window`` (seconds)."""
    times = sorted(times)
    return max((i - bisect_left(times, t - window + 1e-9) + 1 for i, t in enumerate(times)), default=0)
