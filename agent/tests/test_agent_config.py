"""The agent's TOML configuration: what is accepted, and every mistake refused with the key that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import echocenter_agent.config as config_module
from echocenter_agent.config import ConfigError, load_config, parse_config, websocket_url

# The example in the module's docstring is the one tested: the documentation cannot drift from the code.
GOOD = (
    config_module.__doc__.split("```toml\n")[1]
    .split("```")[0]
    .replace('"/etc/echocenter-agent/token"', '"token"')
)


def test_a_good_file_loads(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(GOOD)
    (tmp_path / "token").write_text("eca_secret\n")
    config = load_config(tmp_path / "agent.toml")
    assert config.url == "wss://echocenter.example.com/api/agents/ws"
    assert config.token == "eca_secret" and config.name == "web-1" and config.heartbeat_seconds == 10
    assert config.declared() == [
        "uptime",
        "systemctl restart {unit}",
        "journalctl -u {unit} -n {lines} --no-pager",
    ]
    restart, journal = config.commands[1], config.commands[2]
    assert (restart.timeout, restart.max_output_bytes) == (60, 16_000)
    assert (journal.timeout, journal.max_output_bytes) == (30, 8000)


def test_the_readme_shows_the_same_example() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text(encoding="utf-8").split("## The deployable agent")[1]
    assert section.split("```toml\n")[1].split("```")[0] in config_module.__doc__


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/agents/ws"),
        ("https://ops.example.com/echo/", "wss://ops.example.com/echo/api/agents/ws"),
        ("https://ops.example.com/api/agents/ws", "wss://ops.example.com/api/agents/ws"),
        ("wss://ops.example.com/custom", "wss://ops.example.com/custom"),
    ],
)
def test_http_urls_become_the_agent_websocket_url(url: str, expected: str) -> None:
    assert websocket_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8080", "https://", "http://host:99999", ""])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        websocket_url(url)


def _config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "url": "ws://127.0.0.1:1/api/agents/ws",
        "token": "eca_x",
        "commands": [{"run": "date"}],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": None}, "url: required"),
        ({"token": None}, "token / token_file"),
        ({"token_file": "x"}, "token / token_file"),
        ({"token": "  "}, "token: must be"),
        ({"commands": []}, "commands: at least one"),
        ({"colour": "blue"}, "unknown key"),
        ({"commands": [{"run": ""}]}, r"commands\[0\].run"),
        ({"commands": [{"run": "date", "shell": True}]}, "unknown key"),
        ({"commands": [{"run": "echo {x}"}]}, "no params.x"),
        ({"commands": [{"run": "date", "params": {"x": {"choices": ["a"]}}}]}, "not used"),
        ({"commands": [{"run": "echo {x}", "params": {"x": {"choices": []}}}]}, "choices"),
        ({"commands": [{"run": "echo {x}", "params": {"x": {"regex": "("}}}]}, "regex"),
        ({"commands": [{"run": "echo {x}", "params": {"x": {"type": "int", "min": 5, "max": 1}}}]}, "min"),
        ({"commands": [{"run": "echo {x}", "params": {"x": {"type": "float"}}}]}, "type must be"),
        ({"commands": [{"run": "{prog} -h", "params": {"prog": {"choices": ["ls"]}}}]}, "program itself"),
        ({"commands": [{"run": "echo {x}{y}", "params": {}}]}, "one placeholder"),
        ({"commands": [{"run": "find . -exec {} ;"}]}, "brace"),
        ({"commands": [{"run": "echo 'unclosed"}]}, "cannot be split"),
        ({"commands": [{"run": "date", "timeout_seconds": 0}]}, "timeout_seconds"),
        ({"commands": [{"run": "date", "max_output_bytes": True}]}, "max_output_bytes"),
        ({"commands": [{"run": "date"}, {"run": "date"}]}, "twice"),
    ],
)
def test_mistakes_are_refused_with_the_key_at_fault(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(**changes))


def test_an_unreadable_token_file_or_toml_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('url = "ws://h/x"\ntoken_file = "missing"\n[[commands]]\nrun = "date"\n')
    with pytest.raises(ConfigError, match="token_file: cannot read"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text("url = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "b.toml")
