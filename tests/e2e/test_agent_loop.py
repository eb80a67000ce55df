"""The agent loop end to end, scripted turn by turn with the fake OpenAI-compatible server: the model asks for
a command, a person decides on the card, the agent runs it, the outcome goes back to the model as the tool
result, and the model answers in words (or takes the next step)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from echocenter.db.types import utcnow
from echocenter.settings import Settings
from tests.e2e.harness import (
    AGENT,
    Stack,
    agent_running,
    create_verified_connector,
    register_agent,
    serve_echocenter,
)
from tests.e2e.test_llm_brain import llm_settings
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.fake_openai import (
    Failure,
    FakeOpenAI,
    Hang,
    call,
    calls_answer,
    text_answer,
    tool_answer,
)
from tests.support.live import serve
from tests.support.rows import set_approval
from tests.support.waiting import eventually


@asynccontextmanager
async def served_llm(
    database: Database, tmp_path: Path, emu: RunningEmulator, fake: FakeOpenAI, **overrides: Any
) -> AsyncIterator[Settings]:
    """``fake`` on a port, and settings for the real Butler thinking with it."""
    async with serve(fake.app(), lifespan="off") as llm_url:
        yield llm_settings(database, tmp_path, emu, llm_url, **overrides)


@asynccontextmanager
async def first_start(settings: Settings, emu: RunningEmulator) -> AsyncIterator[Stack]:
    """EchoCenter started on a fresh database: a connector, and the demo agent online (uptime, whoami)."""
    async with serve_echocenter(settings, None) as server:
        # One person asks and approves in these stories (four-eyes has its own tests in
        # test_approval_policy.py), as in the harness's story.
        connector_id = await create_verified_connector(
            server, approvers=["ou_alice"], rate_limit_per_minute=1000, allow_self_approval=True
        )
        token = await register_agent(server.client)
        async with agent_running(server, token):
            yield Stack(server, emu, connector_id)


Scripted = Callable[..., AbstractAsyncContextManager[tuple[Stack, FakeOpenAI, str]]]


@pytest.fixture
def scripted(database: Database, tmp_path: Path, emu: RunningEmulator) -> Scripted:
    """A scripted request: ``async with scripted(*answers, ask=text, **settings) as (story, fake, question)``
    starts EchoCenter with the real Butler thinking with a fake model that gives ``answers`` in turn, and
    Alice asks ``text`` (``question`` is its message_id)."""

    @asynccontextmanager
    async def start(
        *answers: Any, ask: str, **overrides: Any
    ) -> AsyncIterator[tuple[Stack, FakeOpenAI, str]]:
        fake = FakeOpenAI()
        fake.answers += answers
        async with (
            served_llm(database, tmp_path, emu, fake, **overrides) as settings,
            first_start(settings, emu) as story,
        ):
            yield story, fake, await story.say(ask)

    return start


async def carded(story: Stack, count: int) -> list[dict[str, Any]]:
    """The first ``count`` approvals (oldest first), once each has its card in the chat."""

    async def ready() -> list[dict[str, Any]] | None:
        approvals = sorted(await story.approvals(), key=lambda a: a["id"])
        return (
            approvals[:count]
            if len(approvals) >= count and all(a["card_message_id"] for a in approvals)
            else None
        )

    return await eventually(ready)


async def approve(story: Stack, approval: dict[str, Any]) -> dict[str, Any]:
    click = await story.click(approval["card_message_id"], "Approve")
    assert click["toast"]["type"] == "success", click
    return await story.settled(approval["id"])


async def reply_starting(story: Stack, message_id: str, prefix: str) -> dict[str, Any]:
    """The Butler's text reply to ``message_id`` that starts with ``prefix``, once it is in the chat."""

    async def find() -> dict[str, Any] | None:
        for m in await story.bot_messages():
            if m["parent_id"] == message_id and m["content"].get("text", "").startswith(prefix):
                return m
        return None

    return await eventually(find)


async def answer_to(story: Stack, message_id: str, text: str) -> dict[str, Any]:
    reply = await reply_starting(story, message_id, text)
    assert reply["content"]["text"] == text
    return reply


def tool_results(messages: list[dict[str, Any]]) -> dict[str, str]:
    """tool_call_id → content of every tool message."""
    return {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}


def call_ids(answer: Any) -> list[str]:
    return [c["id"] for c in answer["tool_calls"]]


async def test_the_result_goes_back_to_the_model_which_answers_in_words(scripted: Scripted) -> None:
    asked = tool_answer(AGENT, "uptime", "they asked how long the machine has been up")
    async with scripted(
        asked,
        text_answer("demo-agent has been up for a while and the load is low."),
        ask="how is demo-agent doing?",
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        assert len(fake.requests) == 1  # nothing more happens before a person decides
        done = await approve(story, approval)
        assert done["status"] == "EXECUTED"
        await answer_to(story, question, "demo-agent has been up for a while and the load is low.")
        second = fake.messages(1)
        assistant = next(m for m in second if m.get("tool_calls"))
        assert [c["id"] for c in assistant["tool_calls"]] == call_ids(asked)
        result = tool_results(second)[call_ids(asked)[0]]
        assert "exit status 0" in result and "load average" in result
        assert second[-1]["role"] == "tool"  # the model continues from the result
        assert await story.result_messages() == []  # no raw dump: the model answered in words
        assert len(fake.requests) == 2


async def test_a_rejection_goes_back_and_the_model_answers(scripted: Scripted) -> None:
    asked = tool_answer(AGENT, "whoami", "they asked who runs the agent")
    async with scripted(
        asked, text_answer("Bob said no: not during business hours."), ask="who runs demo-agent?"
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        decided = await story.api.post(
            f"/api/approvals/{approval['id']}/decision",
            json={"decision": "reject", "reason": "not during business hours"},
        )
        assert decided.status_code == 200, decided.text
        await answer_to(story, question, "Bob said no: not during business hours.")
        result = tool_results(fake.messages(1))[call_ids(asked)[0]]
        assert result.startswith("rejected by admin:admin: not during business hours")
        assert (await story.approval(approval["id"]))["status"] == "REJECTED"


async def test_two_steps_in_one_request_each_with_its_approval(scripted: Scripted) -> None:
    first = tool_answer(AGENT, "uptime", "first look at the load")
    second = tool_answer(AGENT, "whoami", "then who runs it")
    async with scripted(
        first, second, text_answer("Up, and running as the agent's user."), ask="check demo-agent for me"
    ) as (story, fake, question):
        [one] = await carded(story, 1)
        await approve(story, one)
        _, two = await carded(story, 2)
        assert two["command"] == "whoami" and two["source_message_id"] == question
        assert len(fake.requests) == 2
        await approve(story, two)
        await answer_to(story, question, "Up, and running as the agent's user.")
        results = tool_results(fake.messages(2))
        assert "load average" in results[call_ids(first)[0]]
        assert "exit status 0" in results[call_ids(second)[0]]


async def test_several_calls_in_one_turn_get_a_card_each_and_the_loop_waits_for_all(
    scripted: Scripted,
) -> None:
    both = calls_answer(
        call("command_agent", agent=AGENT, command="uptime", reason="load"),
        call("command_agent", agent=AGENT, command="whoami", reason="user"),
        text="I will check both.",
    )
    async with scripted(
        both, text_answer("Both checks are done."), ask="check load and user on demo-agent"
    ) as (story, fake, question):
        await answer_to(story, question, "I will check both.")
        one, two = await carded(story, 2)
        assert {one["command"], two["command"]} == {"uptime", "whoami"}
        await approve(story, one)
        await approve(story, two)
        await answer_to(story, question, "Both checks are done.")
        assert len(fake.requests) == 2  # one model call after both results, none after the first alone
        assert set(tool_results(fake.messages(1))) == set(call_ids(both))


async def test_the_step_bound_is_reached_and_reported(scripted: Scripted) -> None:
    both = calls_answer(
        call("command_agent", agent=AGENT, command="uptime", reason="load"),
        call("command_agent", agent=AGENT, command="whoami", reason="user"),
    )
    async with scripted(
        both,
        text_answer("I could only run one step: uptime shows a low load."),
        ask="check everything on demo-agent",
        butler_max_steps=1,
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        assert approval["command"] == "uptime"
        await approve(story, approval)
        await answer_to(story, question, "I could only run one step: uptime shows a low load.")
        assert len(await story.approvals()) == 1  # the second call never became a card
        body = fake.requests[1]["body"]
        assert body["tool_choice"] == "none"
        notes = [m["content"] for m in body["messages"] if m["role"] == "system"][1:]
        assert any("all 1 tool steps" in note for note in notes)
        results = tool_results(body["messages"])
        assert results[call_ids(both)[1]] == "not run: the limit of 1 tool steps per request is reached."


async def test_a_model_that_ignores_the_bound_is_stopped_with_an_explanation(scripted: Scripted) -> None:
    async with scripted(
        tool_answer(AGENT, "uptime", "load"),
        tool_answer(AGENT, "whoami", "one more, although told not to"),
        ask="check demo-agent",
        butler_max_steps=1,
    ) as (story, _, question):
        [approval] = await carded(story, 1)
        await approve(story, approval)
        reply = await reply_starting(story, question, "I stopped here")
        assert "1 tool steps" in reply["content"]["text"]
        assert len(await story.approvals()) == 1


async def test_list_agents_and_approval_status_are_answered_at_once(scripted: Scripted) -> None:
    look = calls_answer(call("list_agents"), call("approval_status"))
    async with scripted(
        look, text_answer("demo-agent is online; nothing waits for approval."), ask="what agents do we have?"
    ) as (story, fake, question):
        await answer_to(story, question, "demo-agent is online; nothing waits for approval.")
        agents_result, status_result = (tool_results(fake.messages(1))[i] for i in call_ids(look))
        assert json.loads(agents_result) == [
            {"name": AGENT, "online": True, "commands": ["uptime", "whoami"]}
        ]
        assert json.loads(status_result) == {"approvals_waiting": 0}
        tools = [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]]
        assert tools == ["command_agent", "list_agents", "approval_status"]
        assert await story.approvals() == []


async def test_a_restart_between_approval_and_result_still_finishes_the_loop(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    fake = FakeOpenAI()
    asked = tool_answer(AGENT, "uptime", "load")
    # The model call after the approval hangs while the instance stops; the next instance asks again.
    fake.answers += [asked, Hang(3.0), text_answer("After the restart: the load is low.")]
    overrides = {"butler_loop_lease_seconds": 1.0, "butler_max_retries": 0}
    async with served_llm(database, tmp_path, emu, fake, **overrides) as settings:
        async with first_start(settings, emu) as story:
            question = await story.say("how loaded is demo-agent?")
            [approval] = await carded(story, 1)
            await approve(story, approval)

            async def second_call_out() -> bool:
                return len(fake.requests) == 2

            await eventually(second_call_out)  # the model call after the approval is out: stop now
        connector_id = story.connector_id
        async with serve_echocenter(settings, None) as server:
            story = Stack(server, emu, connector_id)
            await answer_to(story, question, "After the restart: the load is low.")
            assert "load average" in tool_results(fake.messages(2))[call_ids(asked)[0]]
            assert await story.result_messages() == []


async def test_a_rate_limited_model_is_retried_after_its_retry_after(scripted: Scripted) -> None:
    async with scripted(Failure(429, retry_after=1), text_answer("Hello after the wait."), ask="hello") as (
        story,
        fake,
        question,
    ):
        await answer_to(story, question, "Hello after the wait.")
        first, second = fake.requests
        assert second["at"] - first["at"] >= 0.9  # the server said to wait a second


async def test_a_model_down_mid_loop_ends_with_an_apology(scripted: Scripted) -> None:
    async with scripted(
        tool_answer(AGENT, "uptime", "load"), 503, 503, ask="how loaded is demo-agent?", butler_max_retries=1
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        await approve(story, approval)
        await reply_starting(story, question, "Sorry")
        assert len(fake.requests) == 3
        entry = await eventually(lambda: story.logs("butler_error"))
        assert "InternalServerError" in entry[0]["detail"]["error"]


async def test_a_request_continues_from_its_own_steps_not_from_later_messages(scripted: Scripted) -> None:
    asked = tool_answer(AGENT, "uptime", "load")
    async with scripted(
        asked, text_answer("Hi again."), text_answer("The load is low."), ask="how loaded is demo-agent?"
    ) as (story, fake, first):
        [approval] = await carded(story, 1)
        second = await story.say("by the way, hello")  # answered while the first waits for its approval
        await answer_to(story, second, "Hi again.")
        await approve(story, approval)
        await answer_to(story, first, "The load is low.")
        continued = fake.messages(2)
        assert continued[-1]["role"] == "tool" and continued[-1]["tool_call_id"] == call_ids(asked)[0]
        assert all(m.get("content") not in ("by the way, hello", "Hi again.") for m in continued)
        assert {"role": "user", "content": "how loaded is demo-agent?"} in continued


async def test_the_time_budget_ends_the_wait_and_a_late_result_is_still_posted(scripted: Scripted) -> None:
    asked = tool_answer(AGENT, "uptime", "load")
    async with scripted(
        asked,
        text_answer("Nobody approved in time, so I cannot tell yet."),
        ask="how loaded is demo-agent?",
        butler_request_budget_seconds=1.0,
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        await answer_to(story, question, "Nobody approved in time, so I cannot tell yet.")
        body = fake.requests[1]["body"]
        assert body["tool_choice"] == "none"
        assert any("time budget" in m["content"] for m in body["messages"] if m["role"] == "system")
        result = tool_results(body["messages"])[call_ids(asked)[0]]
        assert result.startswith(f"approval #{approval['id']} is still pending")
        # The request is over; a late approval still runs the command and posts its output as it is.
        await approve(story, approval)
        [posted] = await eventually(story.result_messages)
        assert "load average" in posted["content"]["text"]
        assert len(fake.requests) == 2


async def test_approval_status_tells_this_chat_about_its_own_approvals_only(scripted: Scripted) -> None:
    async with scripted(
        tool_answer(AGENT, "uptime", "load"), ask="run uptime on demo-agent and tell me how it went"
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        look = calls_answer(
            call("approval_status", approval_id=approval["id"]),
            call("approval_status", approval_id=approval["id"] + 1),  # the other chat's
        )
        fake.answers += [tool_answer(AGENT, "whoami", "other chat"), look, text_answer("It ran fine.")]
        other = await story.say("who runs demo-agent?", chat_id="oc_p2p_alice")  # a request of its own
        await eventually(lambda: _card_in(story, other, "oc_p2p_alice"))
        await approve(story, approval)
        await answer_to(story, question, "It ran fine.")
        mine, not_mine = (tool_results(fake.messages(3))[i] for i in call_ids(look))
        assert json.loads(mine) == {
            "approval_id": approval["id"],
            "status": "EXECUTED",
            "agent": AGENT,
            "command": "uptime",
            "decided_by": "ou_alice",
        }
        assert not_mine == f"there is no approval #{approval['id'] + 1} in this chat."


async def _card_in(story: Stack, message_id: str, chat_id: str) -> bool:
    items = (await story.emu.control("GET", f"/chats/{chat_id}/messages"))["items"]
    return any(m["parent_id"] == message_id and m["msg_type"] == "interactive" for m in items)


async def test_a_model_call_that_times_out_ends_with_an_apology(scripted: Scripted) -> None:
    async with scripted(Hang(3.0), ask="hello?", butler_timeout=0.5, butler_max_retries=0) as (
        story,
        _,
        question,
    ):
        await reply_starting(story, question, "Sorry")
        entry = await eventually(lambda: story.logs("butler_error"))
        assert "APITimeoutError" in entry[0]["detail"]["error"]


async def test_a_repeated_call_id_in_one_turn_is_one_call(scripted: Scripted) -> None:
    twice = call("list_agents")
    async with scripted(
        calls_answer(twice, twice), text_answer("One look was enough."), ask="what agents are there?"
    ) as (story, fake, question):
        await answer_to(story, question, "One look was enough.")
        [asked] = [m for m in fake.messages(1) if m.get("tool_calls")]
        assert len(asked["tool_calls"]) == 1 and len(tool_results(fake.messages(1))) == 1


async def test_an_outcome_written_without_a_notice_is_found_by_the_sweep(scripted: Scripted) -> None:
    asked = tool_answer(AGENT, "uptime", "load")
    async with scripted(
        asked, text_answer("Someone said no, so I did not run it."), ask="how loaded is demo-agent?"
    ) as (story, fake, question):
        [approval] = await carded(story, 1)
        # As if another instance decided and its notice was lost: only the row says so.
        await set_approval(
            story.server.settings,
            approval["id"],
            status="REJECTED",
            decided_by="ou_bob",
            decided_at=utcnow(),
            decision_reason="no",
        )
        await answer_to(story, question, "Someone said no, so I did not run it.")
        assert tool_results(fake.messages(1))[call_ids(asked)[0]].startswith("rejected by ou_bob: no")
