"""Agents declare what they run: a request outside an agent's list gets no card, the person is told why, and
the refusal is logged; the admin's list wins over the agent's declaration; the LLM sees each agent's list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.harness import AGENT, Stack, asked, create_verified_connector, register_agent, serve_echocenter
from tests.e2e.test_llm_brain import llm_settings
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.fake_openai import FakeOpenAI, text_answer, tool_answer
from tests.support.live import serve
from tests.support.waiting import eventually


async def _agent(story: Stack) -> dict[str, Any]:
    [agent] = (await story.api.get("/api/agents")).json()["items"]
    return dict(agent)


async def test_the_example_agent_declares_its_allow_list_when_it_connects(story: Stack) -> None:
    async def declared() -> dict[str, Any] | None:
        agent = await _agent(story)
        return agent if agent["declared_commands"] else None

    agent = await eventually(declared)
    assert agent["declared_commands"] == ["uptime", "whoami"]
    assert agent["commands"] == [] and agent["effective_commands"] == ["uptime", "whoami"]
    asked_agents = await story.say("agents")
    reply = await story.reply_to(asked_agents)
    assert reply["content"]["text"] == f"Online agents: {AGENT} (runs: uptime; whoami)"


async def test_a_command_outside_the_list_gets_no_card_but_a_reason(story: Stack) -> None:
    agent = await _agent(story)
    patched = await story.api.patch(
        f"/api/agents/{agent['id']}", json={"commands": ["uptime", "systemctl restart {unit}"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["effective_commands"] == ["uptime", "systemctl restart {unit}"]

    message_id = await story.say(f"run {AGENT} rm -rf /")
    reply = await story.reply_to(message_id)
    assert "not one of the commands" in reply["content"]["text"]
    assert "systemctl restart {unit}" in reply["content"]["text"]
    [refused] = await eventually(lambda: story.logs("approval_refused"))
    assert refused["detail"]["command"] == "rm -rf /" and refused["detail"]["agent"] == AGENT
    assert refused["detail"]["reason"] == "command_not_allowed"
    assert await story.approvals() == []
    assert all(m["msg_type"] != "interactive" for m in await story.bot_messages())

    # A template matches one word per placeholder; the admin's list wins over the agent's declaration.
    *_, approval = await asked(story, f"run {AGENT} systemctl restart nginx")
    assert approval["command"] == "systemctl restart nginx"
    second = await story.say(f"run {AGENT} systemctl restart nginx; reboot")
    assert "not one of the commands" in (await story.reply_to(second))["content"]["text"]
    assert len(await story.logs("approval_refused")) == 2


async def test_commands_are_validated_and_need_an_admin(story: Stack) -> None:
    agent = await _agent(story)
    bad = await story.api.patch(f"/api/agents/{agent['id']}", json={"commands": ["echo {"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    created = await story.api.post("/api/agents", json={"name": "web-1", "commands": ["date", " date "]})
    assert created.status_code == 201 and created.json()["commands"] == ["date"]
    missing = await story.api.patch("/api/agents/999", json={"commands": []})
    assert missing.status_code == 404
    anonymous = await story.api.patch(
        f"/api/agents/{agent['id']}", json={"commands": []}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


async def test_the_llm_tool_description_lists_each_agents_commands(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    fake = FakeOpenAI()
    async with (
        serve(fake.app(), lifespan="off") as llm_url,
        serve_echocenter(llm_settings(database, tmp_path, emu, llm_url), None) as server,
    ):
        connector_id = await create_verified_connector(
            server, approvers=["ou_alice"], allow_self_approval=True
        )
        await register_agent(server.client)
        web = {"name": "web-1", "commands": ["systemctl restart {unit}"]}
        assert (await server.client.post("/api/agents", json=web)).status_code == 201
        story = Stack(server, emu, connector_id)
        fake.answers.append(tool_answer("web-1", "reboot", "the user asked"))
        fake.answers.append(text_answer("web-1 only restarts units; I asked for nothing."))
        message_id = await story.say("reboot web-1 please")
        reply = await story.reply_to(message_id)
        assert reply["content"]["text"] == "web-1 only restarts units; I asked for nothing."
        # No card: the refusal went back to the model as the tool's result, and it is logged.
        [tool_turn] = [m for m in fake.messages(1) if m["role"] == "tool"]
        assert "does not run that command" in tool_turn["content"]
        assert "systemctl restart {unit}" in tool_turn["content"]
        refused = await story.logs(action="approval_refused")
        assert refused and refused[0]["detail"]["agent"] == "web-1"
        assert (await story.api.get("/api/approvals")).json() == []
        description = fake.requests[0]["body"]["tools"][0]["function"]["description"]
        assert "- web-1: systemctl restart {unit}" in description
        assert f"- {AGENT}: any command" in description
