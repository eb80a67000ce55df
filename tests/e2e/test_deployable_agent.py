"""The deployable agent (agent/, ``echocenter-agent``) through the real service and the emulator: it
declares its templates, a templated command is approved on the card and runs with its checked value, and a
value outside the template's type is refused by the agent itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from echocenter_agent.client import serve as agent_serve
from echocenter_agent.config import parse_config
from tests.e2e.harness import Stack, asked
from tests.support.waiting import eventually

NAME = "web-1"
TEMPLATE = "echo restarted {unit}"


@asynccontextmanager
async def deployed_agent(story: Stack) -> AsyncIterator[dict[str, Any]]:
    created = await story.api.post("/api/agents", json={"name": NAME})
    assert created.status_code == 201, created.text
    config = parse_config(
        {
            "url": story.server.url,  # http://…: the agent turns it into ws://…/api/agents/ws
            "token": created.json()["token"],
            "heartbeat_seconds": 0.5,
            "commands": [
                {"run": "uptime"},
                {"run": TEMPLATE, "timeout_seconds": 10, "params": {"unit": {"choices": ["nginx", "redis"]}}},
            ],
        }
    )
    task = asyncio.create_task(agent_serve(config, backoff_cap=0.5))

    async def declared() -> dict[str, Any] | None:
        agents = (await story.api.get("/api/agents")).json()["items"]
        mine = [a for a in agents if a["name"] == NAME and a["online"] and a["declared_commands"]]
        return mine[0] if mine else None

    try:
        yield await eventually(declared)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_approved_templated_command_runs_on_the_deployable_agent(story: Stack) -> None:
    async with deployed_agent(story) as agent:
        assert agent["declared_commands"] == ["uptime", TEMPLATE]
        _, card, approval = await asked(story, f"run {NAME} echo restarted redis")
        await story.click(card["message_id"], "Approve")
        done = await story.settled(approval["id"])
        assert done["status"] == "EXECUTED" and done["output"] == "restarted redis\n"
        [result] = await eventually(story.result_messages)
        assert result["content"]["text"].startswith("✅") and "restarted redis" in result["content"]["text"]


async def test_the_agent_refuses_a_value_outside_the_template_type(story: Stack) -> None:
    async with deployed_agent(story):
        # One word per placeholder is all the service checks; the value's type is the agent's to check.
        _, card, approval = await asked(story, f"run {NAME} echo restarted sshd")
        await story.click(card["message_id"], "Approve")
        done = await story.settled(approval["id"])
        assert done["status"] == "FAILED" and "'sshd' is not one of nginx, redis" in done["output"]
