"""The LLM brain against a local OpenAI-compatible server: tool calls become approval cards, text becomes
replies, failures become a short apology and a log line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    Stack,
    create_verified_connector,
    register_agent,
    serve_echocenter,
    story_settings,
)
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.fake_openai import FakeOpenAI, text_answer, tool_answer
from tests.support.live import serve
from tests.support.waiting import eventually


def llm_settings(
    database: Database, tmp_path: Path, emu: RunningEmulator, llm_url: str, **overrides: Any
) -> Any:
    """The real Butler thinking with the fake OpenAI-compatible server at ``llm_url``."""
    return story_settings(
        database,
        tmp_path,
        emu,
        butler_base_url=llm_url + "/v1",
        butler_api_token="sk-test-token",
        butler_model="fake-model",
        **overrides,
    )


@pytest.fixture
async def llm_story(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> AsyncIterator[tuple[Stack, FakeOpenAI]]:
    fake = FakeOpenAI()
    async with serve(fake.app(), lifespan="off") as llm_url:
        settings = llm_settings(database, tmp_path, emu, llm_url)
        async with serve_echocenter(settings, None) as server:
            connector_id = await create_verified_connector(server, approvers=["ou_alice"])
            yield Stack(server, emu, connector_id), fake


async def test_a_tool_call_becomes_an_approval_card(llm_story: tuple[Stack, FakeOpenAI]) -> None:
    story, fake = llm_story
    await register_agent(story.api, "demo-agent")  # cards are only for registered agents
    fake.answers.append(tool_answer("demo-agent", "df -h", "the user asked how full the disks are"))
    message_id = await story.say("how full are the disks on demo-agent?")
    card = await story.card_for(message_id)
    assert "df -h" in str(card["content"])
    [approval] = await story.approvals()
    assert (approval["command"], approval["reason"]) == ("df -h", "the user asked how full the disks are")
    sent = fake.requests[0]
    assert sent["auth"] == "Bearer sk-test-token" and sent["body"]["model"] == "fake-model"
    assert sent["body"]["tools"][0]["function"]["name"] == "command_agent"
    assert sent["body"]["messages"][-1] == {
        "role": "user",
        "content": "how full are the disks on demo-agent?",
    }


async def test_text_answers_are_replies_and_history_is_kept(llm_story: tuple[Stack, FakeOpenAI]) -> None:
    story, fake = llm_story
    fake.answers += [text_answer("Hello Alice!"), text_answer("You said hi before.")]
    first = await story.say("hi")
    assert (await story.reply_to(first))["content"]["text"] == "Hello Alice!"
    second = await story.say("what did I say?")
    assert (await story.reply_to(second))["content"]["text"] == "You said hi before."
    history = fake.requests[1]["body"]["messages"]
    assert {"role": "user", "content": "hi"} in history
    assert {"role": "assistant", "content": "Hello Alice!"} in history


async def test_an_llm_failure_is_an_apology_and_a_log_line(llm_story: tuple[Stack, FakeOpenAI]) -> None:
    story, fake = llm_story
    fake.answers += [500, 500, 500]  # the client retries twice
    message_id = await story.say("hello?")
    reply = await story.reply_to(message_id)
    assert reply["content"]["text"].startswith("Sorry")
    entry = await eventually(lambda: story.logs("butler_error"))
    assert "InternalServerError" in entry[0]["detail"]["error"]


async def test_each_user_has_a_conversation_of_their_own(llm_story: tuple[Stack, FakeOpenAI]) -> None:
    story, fake = llm_story
    fake.answers += [text_answer("noted, Alice"), text_answer("hello Bob")]
    alice = await story.say("my secret plan is X")
    await story.reply_to(alice)
    bob = await story.say("what is the plan?", sender="ou_bob")
    await story.reply_to(bob)
    bob_context = fake.requests[1]["body"]["messages"]
    assert all("secret plan" not in str(m.get("content")) for m in bob_context)
