"""Many connectors on one instance: N emulator apps (50 by default), each with its own connector, long
connection and chat, with the emulator enforcing Feishu's send quotas and EchoCenter pacing itself.

Each app is driven at its quota: five people write to its bot in its chat, 1 message/s each, together 5
messages/s (a chat's send quota, the one a conversation meets first), for a few seconds, and the Butler
answers every message. Prints: replies delivered of messages sent, Feishu's refusals as a share of sends,
how long the outbox took to drain, answer latency (message written → reply in the chat, emulator clock), and
memory per connector (service RSS after connecting all, minus before, divided by N). Figures on delivery and
the outbox come from EchoCenter's /metrics.

Usage: python benchmarks/many_connectors.py [--apps 50] [--rate 5] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

from _stack import add_connector, peak_rss_mib, services

PEOPLE_PER_CHAT = 5


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def main(apps: int, rate: float, seconds: float) -> None:
    async with services(quotas=True) as s:
        emu, api = s.emu, s.api
        await asyncio.sleep(1.0)
        before = rss_mib(s.service_pid)
        people = [
            (await emu.post("/control/users", json={"name": f"Person {p}"})).json()["open_id"]
            for p in range(PEOPLE_PER_CHAT)
        ]
        app_ids = []
        for i in range(apps):
            app = (await emu.post("/control/apps", json={"app_id": f"cli_bench{i:04d}"})).json()
            await emu.post(
                "/control/chats",
                json={
                    "name": f"Bench {i}",
                    "chat_type": "group",
                    "members": people,
                    "chat_id": f"oc_b{i}",
                },
            )
            await add_connector(api, app["app_id"], app["app_secret"], rate_limit_per_minute=10_000)
            app_ids.append(app["app_id"])
        connected = {c["app_id"] for c in (await emu.get("/control/connections")).json()["items"]}
        await asyncio.sleep(1.0)
        after = rss_mib(s.service_pid)
        await emu.post("/control/quotas/reset")
        await emu.post("/control/counters/reset")

        per_person = int(rate * seconds / len(people))
        total = per_person * len(people) * apps
        started = time.monotonic()
        for i, app_id in enumerate(app_ids):
            for person in people:  # together, the chat's quota
                await emu.post(
                    "/control/bench/push",
                    json={
                        "app_id": app_id,
                        "chat_id": f"oc_b{i}",
                        "sender": person,
                        "count": per_person,
                        "rate_per_second": rate / len(people),
                    },
                )
        deadline = started + 600
        sent = 0.0
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            text = (await api.get("/metrics")).text
            sent = metric(text, "echocenter_outbox_sent_total", '{kind="text"}')
            if sent >= total and metric(text, "echocenter_outbox_depth") == 0:
                break
        drained = time.monotonic() - started

        latencies, delivered = [], 0
        for i in range(apps):
            items = (await emu.get(f"/control/chats/oc_b{i}/messages")).json()["items"]
            asked = {m["message_id"]: m["create_time"] for m in items if m["sender_type"] == "user"}
            for m in items:
                if m["sender_type"] == "app" and m["parent_id"] in asked:
                    delivered += 1
                    latencies.append(m["create_time"] - asked[m["parent_id"]])
        quotas = (await emu.get("/control/quotas")).json()
        counters = (await emu.get("/control/counters")).json()["counters"]
        sends = sum(v for k, v in counters.items() if k.startswith("POST /open-apis/im/v1/messages"))
        latencies.sort()
        refused = quotas["refused_total"]
        print(
            f"connectors: {apps} ({len(connected)} long connections up), quotas on, {rate:g} messages/s each"
        )
        print(
            f"messages: {total}; replies delivered: {delivered} ({delivered / total:.1%}); "
            f"/metrics sent: {sent:.0f}"
        )
        print(
            f"Feishu refusals: {refused} of {sends} sends ({refused / max(1, sends):.2%})", quotas["refusals"]
        )
        print(f"drained in {drained:.1f} s for {seconds:g} s of load ({delivered / drained:.0f} replies/s)")
        if latencies:
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"answer latency p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms")
        print(
            f"service RSS: {before:.0f} MiB before, {after:.0f} MiB with {apps} connectors "
            f"→ {(after - before) / apps * 1024:.0f} KiB per connector; "
            f"peak {peak_rss_mib(s.service_pid):.0f} MiB"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second per app")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    asyncio.run(main(args.apps, args.rate, args.seconds))
