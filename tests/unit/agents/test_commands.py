"""Command patterns: literal words exactly, a {placeholder} one word; the admin's list wins."""

from __future__ import annotations

import pytest

from echocenter.agents.commands import effective, is_allowed, pattern_error


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("uptime", True),
        ("  uptime  ", True),
        ("uptime -p", False),
        ("systemctl restart nginx", True),
        ("systemctl  restart   nginx", True),
        ("systemctl restart nginx reboot", False),
        ("systemctl restart", False),
        ("systemctl stop nginx", False),
        ("journalctl -u nginx --lines=50", True),
        ("journalctl -u nginx --lines 50", False),
        ("df -h", False),
    ],
)
def test_patterns_match_word_by_word(command: str, allowed: bool) -> None:
    patterns = ["uptime", "systemctl restart {unit}", "journalctl -u {unit} --lines={n}"]
    assert is_allowed(command, patterns) is allowed


def test_an_empty_list_allows_anything() -> None:
    assert is_allowed("rm -rf /", [])


def test_the_admins_list_wins_over_the_declared_one() -> None:
    assert effective(["date"], ["uptime"]) == ["date"]
    assert effective([], ["uptime"]) == ["uptime"]
    assert effective([], []) == []


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "is empty"),
        ("echo {", "has a brace that is not a {name} placeholder"),
        ("echo {1x}", "has a brace that is not a {name} placeholder"),
        ("cp {a} {a}", "uses a placeholder name twice"),
        ("x" * 501, "is longer than 500 characters"),
        ("systemctl restart {unit}", None),
    ],
)
def test_pattern_errors_say_what_is_wrong(pattern: str, problem: str | None) -> None:
    assert pattern_error(pattern) == problem
