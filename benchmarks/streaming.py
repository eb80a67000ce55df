"""Streaming benchmark: time to first visible token and CardKit updates per streamed reply.

Starts the emulator and EchoCenter (SQLite) in their own processes, with the Butler's LLM brain pointed at
the local fake OpenAI-compatible server (tests/support/fake_openai.py) streaming a long answer word by
word. For each question it measures, from the model's first token (the fake's clock):

- time to first visible token: until the card message carrying the first text exists in the emulator
  (target < 1 s; EchoCenter waits STREAMING_FIRST_UPDATE_SECONDS before making a card, so a short answer
  stays a plain text reply);
- CardKit element updates per reply, and the most CardKit calls on one card within any second (≤ 10).

Usage: python benchmarks/streaming.py [--count N] [--words W] [--token-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fake model lives in tests/support

from _stack import Stack, poll, stack
from tests.support.fake_openai import FakeOpenAI, text_answer
from tests.support.live import serve


async def _wait(probe: Any, timeout: float = 60) -> Any:
    return await poll(probe, timeout)


async def one_reply(s: Stack, fake: FakeOpenAI, words: int) -> tuple[float, int, int]:
    fake.answers.append(text_answer(" ".join(f"token{i}" for i in range(words))))
    streams_before = len(fake.first_token_at)
    sent = (
        await s.emu.post(
            "/control/messages",
            json={"chat_id": "oc_ops", "sender": "ou_alice", "text": "tell me more", "mention_bot": True},
        )
    ).json()

    async def closed_card() -> dict[str, Any] | None:
        items = (await s.emu.get("/control/chats/oc_ops/messages")).json()["items"]
        for m in items:
            card = m.get("card")
            if m["parent_id"] == sent["message_id"] and card and not card["streaming_mode"]:
                return m
        return None

    message = await _wait(closed_card)
    first_token = fake.first_token_at[streams_before]
    calls = message["card"]["calls"]
    updates = sum(1 for c in calls if c["op"] == "content")
    times = [c["at"] for c in calls]
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    return message["create_time"] / 1000 - first_token, updates, busiest


async def main(count: int, words: int, token_ms: float) -> None:
    fake = FakeOpenAI(token_delay=token_ms / 1000)
    async with serve(fake.app(), lifespan="off") as llm_url:
        env = {"BUTLER_BASE_URL": llm_url + "/v1", "BUTLER_API_TOKEN": "sk-bench", "BUTLER_MODEL": "fake"}
        async with stack(env_extra=env, rate_limit_per_minute=10_000) as s:
            await one_reply(s, fake, words)  # warm-up: token fetched, connections pooled
            results = [await one_reply(s, fake, words) for _ in range(count)]
    first = sorted(r[0] * 1000 for r in results)
    updates = [r[1] for r in results]
    print(
        f"Streaming benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite, "
        f"{count} replies of {words} words at {token_ms:g} ms per token"
    )
    print(
        "time to first visible token (ms after the model's first token): "
        f"p50 {statistics.median(first):.0f}  max {first[-1]:.0f}  (target < 1000)"
    )
    print(
        f"CardKit updates per reply: mean {statistics.mean(updates):.1f}  "
        f"min {min(updates)}  max {max(updates)}"
    )
    print(f"most CardKit calls on one card within a second: {max(r[2] for r in results)} (limit 10)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--token-ms", type=float, default=40)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.words, arguments.token_ms))
