"""The Butler feels alive (issue 14), end to end against the emulator and the fake OpenAI-compatible server
streaming tokens: answers grow in a CardKit card, the person's message wears a reaction while the Butler
thinks, threads keep their own conversations, images and files reach the model (or are refused)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.db.engine import make_engine
from echocenter.db.models import ButlerLoop, ConversationTurn, InboundStatus
from echocenter.db.types import utcnow
from echocenter.feishu.untrusted import inert_markdown
from tests.e2e.harness import Stack, create_verified_connector, register_agent, serve_echocenter
from tests.e2e.test_llm_brain import llm_settings
from tests.e2e.test_redrive import _answered_again, _drive_again, _is_answered
from tests.support.databases import Database
from tests.support.emulator import APP_ID, RunningEmulator
from tests.support.fake_openai import FakeOpenAI, text_answer, tool_answer
from tests.support.live import serve
from tests.support.waiting import eventually

LONG = " ".join(f"word{i}" for i in range(40)) + " — **done**."
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

Live = tuple[Stack, FakeOpenAI]


@asynccontextmanager
async def live_story(
    database: Database,
    tmp_path: Path,
    emu: RunningEmulator,
    *,
    connector: dict[str, Any] | None = None,
    **env: Any,
) -> AsyncIterator[Live]:
    fake = FakeOpenAI(token_delay=0.05)
    async with serve(fake.app(), lifespan="off") as llm_url:
        settings = llm_settings(database, tmp_path, emu, llm_url, **env)
        async with serve_echocenter(settings, None) as server:
            connector_id = await create_verified_connector(
                server, approvers=["ou_alice"], rate_limit_per_minute=1000, **(connector or {})
            )
            yield Stack(server, emu, connector_id), fake


@pytest.fixture
async def live(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Live]:
    async with live_story(database, tmp_path, emu) as pair:
        yield pair


async def streamed_card(story: Stack, message_id: str, chat_id: str = "oc_ops") -> dict[str, Any]:
    """The CardKit card answering ``message_id``, once streaming mode is off (the answer is complete)."""

    async def closed() -> dict[str, Any] | None:
        for m in await story.bot_messages(chat_id):
            card = m.get("card")
            if m["parent_id"] == message_id and card and not card["streaming_mode"]:
                return m
        return None

    return await eventually(closed, timeout=15)


def busiest_second(calls: list[dict[str, Any]]) -> int:
    times = [c["at"] for c in calls]
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


async def test_a_long_answer_grows_in_a_card_and_ends_complete(live: Live) -> None:
    story, fake = live
    fake.answers.append(text_answer(LONG))
    message_id = await story.say("tell me a long story")
    message = await streamed_card(story, message_id)
    assert message["content"]["type"] == "card" and message["msg_type"] == "interactive"
    card = message["card"]
    calls = card["calls"]
    assert calls[0]["op"] == "create" and calls[-1]["op"] == "settings"
    assert card["card"]["config"]["streaming_mode"] is False
    contents = [c for c in calls if c["op"] == "content"]
    assert len(contents) >= 3  # it grew while the model wrote
    assert contents[-1]["content"] == inert_markdown(LONG)
    assert any(LONG.startswith(c["content"]) and c["content"] != LONG for c in contents)
    sequences = [c["sequence"] for c in calls[1:]]
    assert sequences == sorted(set(sequences))  # strictly increasing
    assert busiest_second(calls) <= 10
    assert calls[0]["at"] >= fake.first_token_at[0]  # the card waited for the first tokens
    assert fake.requests[0]["body"]["stream"] is True
    # no second reply: the card is the answer
    assert [m for m in await story.bot_messages() if m["parent_id"] == message_id] == [message]


async def test_a_short_answer_stays_a_text_reply(live: Live) -> None:
    story, fake = live
    fake.answers.append(text_answer("Hi!"))
    message_id = await story.say("hi")
    assert (await story.reply_to(message_id))["content"]["text"] == "Hi!"
    assert story.emu.world.cards == {}


async def test_the_persons_message_wears_a_reaction_while_the_butler_thinks(live: Live) -> None:
    story, fake = live
    fake.answers.append(text_answer("Thought about it."))
    message_id = await story.say("think about it")
    await story.reply_to(message_id)

    async def removed() -> list[dict[str, Any]] | None:
        log = [
            e
            for e in (await story.emu.control("GET", "/reactions"))["items"]
            if e["message_id"] == message_id
        ]
        return log if [e["op"] for e in log] == ["add", "delete"] else None

    log = await eventually(removed)
    assert log[0]["emoji_type"] == "OnIt"
    assert story.emu.world.reactions == {}


async def test_cardkit_refused_falls_back_to_text_once_per_connector(live: Live) -> None:
    story, fake = live
    await story.emu.control("PATCH", f"/apps/{APP_ID}", {"missing_scopes": ["cardkit:card:write"]})
    fake.answers += [text_answer(LONG), text_answer(LONG + " again")]
    first = await story.say("a long story please")
    assert (await story.reply_to(first))["content"]["text"] == LONG.replace("*", "＊")
    second = await story.say("another one")
    assert (await story.reply_to(second))["content"]["text"].endswith("again")
    [entry] = await story.logs("streaming_fallback")
    assert entry["level"] == "warn" and entry["detail"]["feishu_code"] == 99991672


async def test_a_command_mid_stream_ends_the_stream_then_the_approval_card(live: Live) -> None:
    story, fake = live
    await register_agent(story.api, "demo-agent")
    answer = tool_answer("demo-agent", "df -h", "disk check")
    answer["content"] = LONG
    fake.answers.append(answer)
    message_id = await story.say("check the disks on demo-agent")
    streamed = await streamed_card(story, message_id)
    assert streamed["card"]["card"]["body"]["elements"][0]["content"] == inert_markdown(LONG)

    async def approval_card() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in await story.bot_messages()
                if m["parent_id"] == message_id and m["msg_type"] == "interactive" and "card" not in m
            ),
            None,
        )

    card = await eventually(approval_card)
    assert "df -h" in json.dumps(card["content"])
    assert card["create_time"] >= streamed["create_time"]


async def test_streaming_off_keeps_text_replies(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with live_story(
        database, tmp_path, emu, connector={"streaming_replies": False, "thinking_reaction": ""}
    ) as (
        story,
        fake,
    ):
        fake.answers.append(text_answer(LONG))
        message_id = await story.say("a long story")
        await story.reply_to(message_id)
        assert emu.world.cards == {} and emu.world.reaction_log == []
        assert "stream" not in fake.requests[0]["body"]


async def say_in_thread(story: Stack, text: str, thread_of: str) -> str:
    sent = await story.emu.control(
        "POST",
        "/messages",
        {
            "chat_id": "oc_ops",
            "sender": "ou_alice",
            "text": text,
            "mention_bot": True,
            "thread_of": thread_of,
        },
    )
    message_id: str = sent["message_id"]
    return message_id


async def test_threads_get_answers_in_thread_and_conversations_of_their_own(live: Live) -> None:
    story, fake = live
    fake.answers += [text_answer(f"answer {i}") for i in range(4)]
    root_a = await story.say("topic A")
    await story.reply_to(root_a)
    root_b = await story.say("topic B")
    await story.reply_to(root_b)
    in_a = await say_in_thread(story, "the secret of thread A is 42", root_a)
    reply_a = await story.reply_to(in_a)
    thread_a = story.emu.world.messages[in_a].thread_id
    assert reply_a["thread_id"] == thread_a and reply_a["reply_in_thread"] is True
    in_b = await say_in_thread(story, "what is the secret?", root_b)
    reply_b = await story.reply_to(in_b)
    assert reply_b["thread_id"] == story.emu.world.messages[in_b].thread_id != thread_a
    seen_by_b = json.dumps(fake.requests[3]["body"]["messages"])
    assert "secret of thread A" not in seen_by_b and "topic A" not in seen_by_b


async def test_an_approval_asked_in_a_thread_is_answered_there(live: Live) -> None:
    story, fake = live
    await register_agent(story.api, "demo-agent")
    fake.answers += [text_answer("ok"), tool_answer("demo-agent", "uptime", "asked in a thread")]
    root = await story.say("ops topic")
    await story.reply_to(root)
    asked = await say_in_thread(story, "run uptime on demo-agent", root)
    card = await story.card_for(asked)
    assert card["thread_id"] == story.emu.world.messages[asked].thread_id and card["reply_in_thread"] is True


async def send_resource(story: Stack, kind: str, data: bytes, **extra: Any) -> str:
    body = {
        "chat_id": "oc_p2p_alice",
        "sender": "ou_alice",
        "message_type": kind,
        "resource_base64": base64.b64encode(data).decode(),
        **extra,
    }
    message_id: str = (await story.emu.control("POST", "/messages", body))["message_id"]
    return message_id


def reply_in_dm(story: Stack, message_id: str) -> Callable[[], Any]:
    async def find() -> dict[str, Any] | None:
        return next(
            (m for m in await story.bot_messages("oc_p2p_alice") if m["parent_id"] == message_id), None
        )

    return find


async def test_an_image_reaches_the_model_as_an_image_input(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with live_story(database, tmp_path, emu, butler_vision=True) as (story, fake):
        fake.answers.append(text_answer("A single pixel."))
        message_id = await send_resource(story, "image", PNG, resource_content_type="image/png")
        reply = await eventually(reply_in_dm(story, message_id))
        assert reply["content"]["text"] == "A single pixel."
        content = fake.requests[0]["body"]["messages"][-1]["content"]
        images = [part for part in content if part["type"] == "image_url"]
        assert images == [
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
            }
        ]


async def test_an_image_without_vision_is_named_as_unreadable(live: Live) -> None:
    story, fake = live
    message_id = await send_resource(story, "image", PNG, resource_content_type="image/png")
    reply = await eventually(reply_in_dm(story, message_id))
    assert "cannot look at images" in reply["content"]["text"]
    assert fake.requests == []


async def test_a_text_file_reaches_the_model_as_text(live: Live) -> None:
    story, fake = live
    fake.answers.append(text_answer("Read it."))
    message_id = await send_resource(story, "file", b"line one\nline two\n", file_name="notes.txt")
    await eventually(reply_in_dm(story, message_id))
    assert "line two" in fake.requests[0]["body"]["messages"][-1]["content"]


async def test_an_oversized_file_is_refused_with_a_message(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with live_story(database, tmp_path, emu, butler_file_max_bytes=100) as (story, fake):
        message_id = await send_resource(story, "file", b"x" * 500, file_name="big.log")
        reply = await eventually(reply_in_dm(story, message_id))
        assert "big.log is larger than" in reply["content"]["text"]
        assert fake.requests == []  # nothing went to the model
        [entry] = await story.logs("attachment_refused")
        assert entry["detail"]["message_id"] == message_id


async def _loop_done(engine: AsyncEngine, message_id: str) -> bool:
    async with engine.connect() as conn:
        status = await conn.scalar(
            select(ButlerLoop.status).where(ButlerLoop.source_message_id == message_id)
        )
    return status == "DONE"


async def test_a_redriven_streamed_answer_reuses_its_card(live: Live) -> None:
    story, fake = live
    settings = story.server.settings
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        fake.answers += [text_answer(LONG), text_answer(LONG + " (again)")]
        message_id = await story.say("a long story")
        first = await streamed_card(story, message_id)
        await eventually(lambda: _is_answered(engine, message_id))
        # As if it crashed after the card was shown, before the request (its agent loop) and the message
        # were marked answered: the loop's model turn runs again and streams into the same card.
        async with engine.begin() as conn:
            await conn.execute(
                update(ButlerLoop)
                .where(ButlerLoop.source_message_id == message_id)
                .values(
                    status="RUNNING",
                    model_turns=0,
                    finished_at=None,
                    lease_owner="a-dead-instance",
                    lease_until=utcnow(),
                )
            )
            await conn.execute(delete(ConversationTurn).where(ConversationTurn.turn_key.like("answer:%")))
        await _drive_again(engine, message_id, InboundStatus.ROUTED)
        await eventually(lambda: _answered_again(engine, message_id), timeout=20)
        await eventually(lambda: _loop_done(engine, message_id), timeout=20)  # the inbox or the sweep
        replies = [m for m in await story.bot_messages() if m["parent_id"] == message_id]
        assert [m["message_id"] for m in replies] == [first["message_id"]]  # still one card
        assert len(story.emu.world.cards) == 1
        entity = await story.emu.control("GET", f"/cardkit/{first['card']['card_id']}")
        assert entity["streaming_mode"] is False
        assert entity["card"]["body"]["elements"][0]["content"] == inert_markdown(LONG + " (again)")
        sequences = [c["sequence"] for c in entity["calls"][1:]]
        assert sequences == sorted(set(sequences))
        assert len(fake.requests) == 2 and all(r["body"]["stream"] is True for r in fake.requests)
    finally:
        await engine.dispose()


async def test_a_post_with_an_image_brings_its_text_and_image_to_the_model(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with live_story(database, tmp_path, emu, butler_vision=True) as (story, fake):
        fake.answers.append(text_answer("Looks fine."))
        sent = await story.emu.control(
            "POST",
            "/messages",
            {
                "chat_id": "oc_ops",
                "sender": "ou_alice",
                "text": "is this chart fine?",
                "message_type": "post",
                "mention_bot": True,
                "resource_base64": base64.b64encode(PNG).decode(),
                "resource_content_type": "image/png",
            },
        )
        await story.reply_to(sent["message_id"])
        parts = fake.requests[0]["body"]["messages"][-1]["content"]
        assert parts[0] == {"type": "text", "text": "is this chart fine?"}
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_an_image_that_is_not_one_is_refused(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with live_story(database, tmp_path, emu, butler_vision=True) as (story, fake):
        message_id = await send_resource(
            story, "image", b"<svg onload=alert(1)>", resource_content_type="image/png"
        )
        reply = await eventually(reply_in_dm(story, message_id))
        assert "not one I can read" in reply["content"]["text"]
        assert fake.requests == []


async def test_a_refused_command_mid_stream_still_closes_the_card(live: Live) -> None:
    # The agent loop (issue 16): the refusal goes back to the model as the call's result, and the model's
    # next words follow the closed card in the chat.
    story, fake = live
    answer = tool_answer("no-such-agent", "uptime", "asked")  # no agent by that name: refused, no approval
    answer["content"] = LONG
    fake.answers += [answer, text_answer("No such agent.")]
    message_id = await story.say("uptime on no-such-agent")
    streamed = await streamed_card(story, message_id)
    assert streamed["card"]["card"]["body"]["elements"][0]["content"] == inert_markdown(LONG)
    refusal = await story.reply_to(message_id)
    assert refusal["content"]["text"] == "No such agent."
    assert refusal["create_time"] >= streamed["create_time"]
    [tool_turn] = [m for m in fake.messages(1) if m["role"] == "tool"]
    assert tool_turn["tool_call_id"] == answer["tool_calls"][0]["id"]  # the streamed call kept its id
    assert tool_turn["content"].startswith("refused, no approval was asked: there is no registered agent")
    assert await story.approvals() == []


async def test_an_answer_longer_than_a_card_holds_continues_as_text(live: Live) -> None:
    story, fake = live
    fake.token_delay = 0.005
    lines = [f"line {i:03d} " + "x" * 70 for i in range(400)]  # about 32 KB: more than a card holds
    fake.answers.append(text_answer("\n".join(lines)))
    message_id = await story.say("a very long answer")
    card = (await streamed_card(story, message_id))["card"]
    shown = card["card"]["body"]["elements"][0]["content"]
    assert shown.startswith("line 000") and shown.endswith("…")
    rest = (await story.reply_to(message_id))["content"]["text"]
    assert rest.endswith(lines[-1])
    assert shown.removesuffix("\n\n…").rstrip("\n").split("\n")[-1] in lines  # cut at a line end
    last_on_card = shown.removesuffix("\n\n…").split("\n")[-1]
    assert rest.startswith(lines[lines.index(last_on_card) + 1])  # nothing lost, nothing twice


async def test_each_model_turn_of_the_agent_loop_streams_into_a_card_of_its_own(live: Live) -> None:
    # The agent loop (issue 16) asks the model again once the approval is decided: that turn's words get a
    # card of their own, never written over the first turn's card.
    story, fake = live
    await register_agent(story.api, "demo-agent")
    asking = tool_answer("demo-agent", "df -h", "disk check")
    asking["content"] = LONG
    after = LONG + " (after the decision)"
    fake.answers += [asking, text_answer(after)]
    message_id = await story.say("check the disks on demo-agent")
    first = await streamed_card(story, message_id)
    [approval] = await eventually(story.approvals)
    decided = await story.api.post(
        f"/api/approvals/{approval['id']}/decision", json={"decision": "reject", "reason": "not now"}
    )
    assert decided.status_code == 200, decided.text

    async def two_closed_cards() -> list[dict[str, Any]] | None:
        cards = [
            m
            for m in await story.bot_messages()
            if m["parent_id"] == message_id and m.get("card") and not m["card"]["streaming_mode"]
        ]
        return cards if len(cards) == 2 else None

    cards = await eventually(two_closed_cards, timeout=20)
    shown = {m["message_id"]: m["card"]["card"]["body"]["elements"][0]["content"] for m in cards}
    assert shown[first["message_id"]] == inert_markdown(LONG)
    [second] = [m for m in cards if m["message_id"] != first["message_id"]]
    assert shown[second["message_id"]] == inert_markdown(after)
    assert second["card"]["card_id"] != first["card"]["card_id"] and len(story.emu.world.cards) == 2
    assert fake.requests[1]["body"]["stream"] is True
    [tool_turn] = [m for m in fake.messages(1) if m["role"] == "tool"]
    assert tool_turn["content"].startswith("rejected by admin:admin: not now")
