"""Approvals benchmark: click-to-card-response latency and Open API requests per outbound message.

Starts the emulator and EchoCenter (SQLite) in their own processes and a real example agent, then repeats
the seed's story N times: a person asks to run a command, the Butler sends a card, a person clicks Approve
(the card response rides back in the long-connection ack), the agent runs it and the result is posted.

Prints the p50/p99/max from the click's event frame sent to its ack (with the card) received, measured by
the emulator, and how many Open API requests EchoCenter made per message or card update it sent once warm
(a token refresh or a retry would show as more than 1.00).

Usage: python benchmarks/approvals.py [--count N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from typing import Any

from _stack import Stack, peak_rss_mib, poll, stack

from echocenter.agents.example import run_agent

AGENT = "bench-agent"


async def _wait(probe: Any, timeout: float = 30) -> Any:
    return await poll(probe, timeout)


async def one_story(s: Stack, i: int) -> float:
    sent = (
        await s.emu.post(
            "/control/messages",
            json={
                "chat_id": "oc_ops",
                "sender": "ou_alice",
                "text": f"run {AGENT} whoami",
                "mention_bot": True,
            },
        )
    ).json()

    async def card() -> dict[str, Any] | None:
        items = (await s.emu.get("/control/chats/oc_ops/messages")).json()["items"]
        return next(
            (
                m
                for m in reversed(items)
                if m["parent_id"] == sent["message_id"] and m["msg_type"] == "interactive"
            ),
            None,
        )

    found = await _wait(card)
    click = (
        await s.emu.post(
            "/control/cards/click",
            json={"message_id": found["message_id"], "operator": "ou_alice", "button": "Approve"},
        )
    ).json()
    if click["status"] != "answered":
        raise RuntimeError(f"click {i} was not answered: {click}")

    async def result() -> bool:
        items = (await s.emu.get("/control/chats/oc_ops/messages")).json()["items"]
        return any(
            m["parent_id"] == sent["message_id"]
            and m["msg_type"] == "text"
            and m["content"]["text"].startswith(("✅", "❌"))
            for m in items
        )

    await _wait(result)
    deliveries = (await s.emu.get("/control/deliveries")).json()["items"]
    ack_ms: float = next(d for d in deliveries if d["event_id"] == click["event_id"])["ack_ms"]
    return ack_ms


def open_api_requests(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if "/open-apis/" in k)


def outbound_operations(counters: dict[str, int]) -> int:
    return sum(
        v for k, v in counters.items() if k.startswith(("POST /open-apis/im/", "PATCH /open-apis/im/"))
    )


async def main(count: int) -> None:
    async with stack(approvers=["ou_alice"], rate_limit_per_minute=10_000) as s:
        token = (await s.api.post("/api/agents", json={"name": AGENT})).json()["token"]
        ws_url = s.service_url.replace("http", "ws", 1) + "/api/agents/ws"
        agent = asyncio.create_task(run_agent(ws_url, token, allowed=frozenset({"whoami"})))
        await _wait(lambda: _online(s))
        for i in range(3):  # warm-up: token fetched, bot identity learned, connections pooled
            await one_story(s, i)
        await s.emu.post("/control/counters/reset")
        latencies = [await one_story(s, i) for i in range(count)]
        counters = (await s.emu.get("/control/counters")).json()["counters"]
        rss = peak_rss_mib(s.service_pid)
        agent.cancel()
    latencies.sort()
    requests, operations = open_api_requests(counters), outbound_operations(counters)
    python = sys.version.split()[0]
    print(f"Approvals benchmark — {os.cpu_count()} CPUs, Python {python}, SQLite, {count} stories")
    print(
        f"click → card response (ms): p50 {statistics.median(latencies):.1f}  "
        f"p99 {latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]:.1f}  max {latencies[-1]:.1f}"
    )
    print(
        f"Open API requests per outbound message: {requests / operations:.2f} "
        f"({requests} requests for {operations} sends and card updates)"
    )
    print(f"EchoCenter peak RSS (MiB): {rss:.1f}")


async def _online(s: Stack) -> bool:
    return any(a["online"] for a in (await s.api.get("/api/agents")).json())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100)
    asyncio.run(main(parser.parse_args().count))
