from __future__ import annotations

import pytest

from echocenter.agents.example import AgentStop, agent_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/agents/ws"),
        ("https://echo.example.com/", "wss://echo.example.com/api/agents/ws"),
        ("https://echo.example.com/echocenter", "wss://echo.example.com/echocenter/api/agents/ws"),
        ("ws://host:9000/api/agents/ws", "ws://host:9000/api/agents/ws"),
        ("wss://host", "wss://host/api/agents/ws"),
        ("HTTP://Host:80", "ws://Host:80/api/agents/ws"),
    ],
)
def test_the_base_url_or_the_ws_url_both_lead_to_the_agent_socket(given: str, expected: str) -> None:
    assert agent_url(given) == expected


@pytest.mark.parametrize(
    "given", ["", "localhost:8080", "ftp://host/x", "http://", "http://host:port", "http://[::1", "not a url"]
)
def test_a_malformed_url_stops_with_a_clear_message(given: str) -> None:
    with pytest.raises(AgentStop, match="malformed URL"):
        agent_url(given)
