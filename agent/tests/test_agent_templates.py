"""Templates: each placeholder filled per argument with a value of its type; anything else refused."""

from __future__ import annotations

import re

import pytest

from echocenter_agent.templates import Param, Refused, match, parse_template

TEMPLATES = (
    parse_template("uptime", {}),
    parse_template("systemctl restart {unit}", {"unit": Param("unit", "choice", choices=("nginx", "redis"))}),
    parse_template(
        "journalctl -u {unit} --lines={n}",
        {
            "unit": Param("unit", "regex", regex=re.compile(r"[a-z]+\.service")),
            "n": Param("n", "int", minimum=1, maximum=500),
        },
    ),
    parse_template("echo 'two words'", {}),
)


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("uptime", ["uptime"]),
        ("systemctl restart redis", ["systemctl", "restart", "redis"]),
        ("journalctl -u web.service --lines=20", ["journalctl", "-u", "web.service", "--lines=20"]),
        ("journalctl -u web.service --lines=007", ["journalctl", "-u", "web.service", "--lines=7"]),
        ("echo 'two words'", ["echo", "two words"]),
    ],
)
def test_commands_that_fit_give_an_argv(command: str, argv: list[str]) -> None:
    assert match(command, TEMPLATES)[1] == argv


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("systemctl restart sshd", "not one of nginx, redis"),
        ("systemctl restart nginx; reboot", "not one of this agent's commands"),
        ("systemctl restart 'nginx; reboot'", "not one of nginx, redis"),
        ("journalctl -u web.service --lines=0", "outside 1..500"),
        ("journalctl -u web.service --lines=501", "outside 1..500"),
        ("journalctl -u web.service --lines=ten", "not an integer"),
        ("journalctl -u ../etc --lines=5", "does not match"),
        ("journalctl -u $(reboot).service --lines=5", "does not match"),
        ("uptime && reboot", "not one of this agent's commands"),
        ("rm -rf /", "not one of this agent's commands"),
        ("echo 'unclosed", "cannot be split"),
    ],
)
def test_values_outside_their_type_and_other_commands_are_refused(command: str, why: str) -> None:
    with pytest.raises(Refused, match=re.escape(why)):
        match(command, TEMPLATES)


def test_the_declared_pattern_quotes_literal_words_and_keeps_placeholders() -> None:
    assert [t.pattern for t in TEMPLATES] == [
        "uptime",
        "systemctl restart {unit}",
        "journalctl -u {unit} --lines={n}",
        "echo 'two words'",
    ]
