"""The agent loop on two instances: the message, the click and the agent land on different instances, and
each request is continued by exactly one of them (one model call per step, one answer per request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.multi.conftest import Cluster, cluster_env, started_cluster
from tests.support.databases import fresh_database
from tests.support.emulator import RunningEmulator
from tests.support.fake_openai import FakeOpenAI, Scripted, text_answer, tool_answer
from tests.support.live import serve
from tests.support.waiting import eventually

REQUESTS = 6


def think(body: dict[str, Any]) -> Scripted:
    """Ask for whoami on a question; answer in words, quoting the request, once the result is back."""
    messages = body["messages"]
    if messages[-1]["role"] == "tool":
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        return text_answer(f"done: {question}")
    return tool_answer("worker", "whoami", "asked in chat")


async def test_each_request_is_continued_by_exactly_one_instance(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    fake = FakeOpenAI(rule=think)
    async with (
        serve(fake.app(), lifespan="off") as llm_url,
        fresh_database("postgresql", tmp_path) as database,
    ):
        env = {
            **cluster_env(database, emu.url),
            "BUTLER_BASE_URL": llm_url + "/v1",
            "BUTLER_API_TOKEN": "sk-test-token",
            "BUTLER_MODEL": "fake-model",
            "INBOX_SWEEP_SECONDS": "0.5",
        }
        async with started_cluster(env, 2, tmp_path, emu, database) as cluster:
            await _run(cluster, fake)


async def _run(cluster: Cluster, fake: FakeOpenAI) -> None:
    # ou_alice asks and clicks: this test is about the fleet, four-eyes has its own tests.
    async with cluster.agent_online_everywhere(allow_self_approval=True) as (_, holder):
        questions = {}
        for i in range(REQUESTS):
            said = await cluster.emu.control(
                "POST",
                "/messages",
                {"chat_id": "oc_ops", "sender": "ou_alice", "text": f"question {i}", "mention_bot": True},
            )
            questions[said["message_id"]] = f"question {i}"

        async def carded() -> list[dict[str, Any]]:
            items = (await cluster[0].api.get("/api/approvals", params={"status": "PENDING"})).json()
            pending = [a for a in items if a["card_message_id"]]
            return pending if len(pending) == REQUESTS else []

        await cluster.approve_away_from(holder, await eventually(carded, timeout=20))

        async def all_answered() -> list[dict[str, Any]]:
            items = (await cluster.emu.control("GET", "/chats/oc_ops/messages"))["items"]
            answers = [
                m
                for m in items
                if m["sender_type"] == "app" and m["content"].get("text", "").startswith("done: ")
            ]
            return answers if len(answers) >= REQUESTS else []

        answers = await eventually(all_answered, timeout=30)
        assert sorted(m["content"]["text"] for m in answers) == sorted(
            f"done: {q}" for q in questions.values()
        )
        assert {m["parent_id"] for m in answers} == set(questions)
        assert len(fake.requests) == 2 * REQUESTS  # one model call per step: no loop continued twice
