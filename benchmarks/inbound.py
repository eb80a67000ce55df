"""Inbound benchmark: EchoCenter's long-connection ingress against the official lark-oapi client.

Starts the emulator, EchoCenter (SQLite, its own process) and the official SDK client with a no-op handler
(its own process, on a second app), pushes message events over the long connection at a fixed rate and as
fast as possible, and prints, side by side from one run:

- events/s fully processed by EchoCenter (deduped, filtered, logged, handed to the Butler: ws_routed entries),
- events/s acked by the SDK (its handler does nothing),
- p50/p99 from frame sent to ack received (measured in the emulator),
- EchoCenter's peak RSS;
- with ``--butler real``: messages/s answered (the bot's reply stored in the emulator) and p50/p99 from the
  message pushed to its reply posted, measured in the emulator, next to the SDK's no-op acks/s, and the
  service's own view from /metrics (ack and answer latency histograms, replies sent).

Usage: python benchmarks/inbound.py [--count N] [--rate R] [--butler noop|real]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _stack import EMULATOR_APP, peak_rss_mib, stack
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
SDK_APP = {"app_id": "cli_bench_sdk", "app_secret": "bench-sdk-secret-0123456789"}


async def wait_batch(
    emu: httpx.AsyncClient, batch_id: str, count: int, timeout: float = 300
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = (await emu.get(f"/control/bench/stats/{batch_id}")).json()
        if stats["acked"] >= count or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


async def routed_times(api: httpx.AsyncClient, connector_id: int, since: datetime) -> list[datetime]:
    times: list[datetime] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"action": "ws_routed", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get(f"/api/integrations/feishu/{connector_id}/logs", params=params)).json()
        for entry in page["items"]:
            at = datetime.fromisoformat(entry["created_at"])
            if at < since:
                return times
            times.append(at)
        cursor = page["next_cursor"]
        if not cursor:
            return times


async def wait_answers(
    emu: httpx.AsyncClient, batch_id: str, count: int, timeout: float = 120
) -> dict[str, Any]:
    """The batch's answer figures once every message has its reply (or the replies stop coming)."""
    deadline, answered, still = time.monotonic() + timeout, -1, 0
    while True:
        stats: dict[str, Any] = (await emu.get(f"/control/bench/stats/{batch_id}?answers=1")).json()
        still = still + 1 if stats["answered"] == answered else 0
        answered = stats["answered"]
        if answered >= count or still >= 20 or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.5)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: httpx.AsyncClient) -> Samples:
    """The service's own samples from /metrics, read by prometheus-client's parser: (name, labels) → value."""
    text = (await api.get("/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def histogram_quantile(before: Samples, after: Samples, metric: str, q: float) -> float | None:
    """Prometheus-style quantile (upper bucket bound, seconds) of what was observed between two scrapes."""
    buckets = sorted(
        (float(dict(labels)["le"]), value - before.get((name, labels), 0.0))
        for (name, labels), value in after.items()
        if name == f"{metric}_bucket"
    )
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    return next(bound for bound, count in buckets if count >= q * total)


async def run_phase(
    emu: httpx.AsyncClient,
    api: httpx.AsyncClient | None,
    connector_id: int,
    app_id: str,
    count: int,
    rate: float,
    *,
    answers: bool = False,
    chat_ids: list[str] | None = None,
) -> dict[str, Any]:
    started = datetime.now().astimezone()
    t0 = time.perf_counter()
    batch = (
        await emu.post(
            "/control/bench/push",
            json={"app_id": app_id, "count": count, "rate_per_second": rate, "chat_ids": chat_ids or []},
        )
    ).json()["batch_id"]
    stats = await wait_batch(emu, batch, count)
    if answers:
        stats |= await wait_answers(emu, batch, count)
    result = {
        "acked": stats["acked"],
        "acked_per_s": stats["acked_per_s"],
        "p50": stats["ack_ms_p50"],
        "p99": stats["ack_ms_p99"],
        "redelivered": stats["redelivered"],
        **{k: stats.get(k) for k in ("answered", "answered_per_s", "answer_ms_p50", "answer_ms_p99")},
    }
    if api is not None:
        # Wait (cheaply: one newest entry per look, so the harness does not load the service) until the
        # newest ws_routed entry stops changing, then read them all once.
        deadline, newest, still = time.monotonic() + 120, None, 0
        while still < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            page = (
                await api.get(
                    f"/api/integrations/feishu/{connector_id}/logs",
                    params={"action": "ws_routed", "limit": 1},
                )
            ).json()["items"]
            latest = page[0]["id"] if page else None
            still = still + 1 if latest == newest else 0
            newest = latest
        times = await routed_times(api, connector_id, started)
        result["processed"] = len(times)
        if times:
            # From the first push to the last ws_routed entry: the whole pipeline, end to end.
            elapsed = (max(times) - started).total_seconds()
            result["processed_per_s"] = len(times) / elapsed if elapsed > 0 else None
    result["wall_s"] = time.perf_counter() - t0
    return result


async def main(count: int, rate: float, noop_butler: bool, chats: int) -> None:
    async with stack(noop_butler=noop_butler, rate_limit_per_minute=10_000) as s:
        emu, api, cid, app = s.emu, s.api, s.connector_id, EMULATOR_APP[0]
        await emu.post("/control/apps", json=SDK_APP)
        await s.spawn(
            sys.executable,
            str(HERE / "sdk_noop_peer.py"),
            s.emulator_url,
            SDK_APP["app_id"],
            SDK_APP["app_secret"],
        )
        for _ in range(300):
            apps = {c["app_id"] for c in (await emu.get("/control/connections")).json()["items"]}
            if apps == {app, SDK_APP["app_id"]}:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"not both connected: {apps}")

        # Warm-up, then the measured phases, EchoCenter and SDK alternating.
        answers = not noop_butler
        chat_ids = [f"oc_bench_{i:03d}" for i in range(chats)] if chats > 1 else []
        for chat_id in chat_ids:  # one person writing in each (Feishu sends at most 5 messages/s per chat)
            await emu.post(
                "/control/chats", json={"name": chat_id, "members": ["ou_alice"], "chat_id": chat_id}
            )
        await run_phase(emu, api, cid, app, 200, 0, answers=answers, chat_ids=chat_ids)
        await run_phase(emu, None, cid, SDK_APP["app_id"], 200, 0)
        scraped = [await scrape(api)]
        fixed_ec = await run_phase(
            emu, api, cid, app, int(rate * 10), rate, answers=answers, chat_ids=chat_ids
        )
        scraped.append(await scrape(api))
        fixed_sdk = await run_phase(emu, None, cid, SDK_APP["app_id"], int(rate * 10), rate)
        scraped.append(await scrape(api))
        max_ec = await run_phase(emu, api, cid, app, count, 0, answers=answers, chat_ids=chat_ids)
        scraped.append(await scrape(api))
        max_sdk = await run_phase(emu, None, cid, SDK_APP["app_id"], count, 0)
        rss = peak_rss_mib(s.service_pid)
    # The service's own view of the fixed-rate phase (between the first two scrapes), from /metrics.
    fixed_metrics = {
        "ack_p99_ms": histogram_quantile(*scraped[0:2], "echocenter_ack_latency_seconds", 0.99),
        "answer_p99_ms": histogram_quantile(*scraped[0:2], "echocenter_answer_latency_seconds", 0.99),
    }
    sent_key = ("echocenter_outbox_sent_total", frozenset({("kind", "text")}))
    sent_max = scraped[3].get(sent_key, 0.0) - scraped[2].get(sent_key, 0.0)

    def fmt(value: Any, spec: str = ".1f") -> str:
        return "n/a" if value is None else format(value, spec)

    print(
        f"Inbound benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite, "
        f"{'no-op Butler (ingress alone)' if noop_butler else 'real Butler answering each message'}, "
        f"{max(chats, 1)} chat(s)"
    )
    print(f"{'':34}{'EchoCenter':>14}{'lark-oapi no-op':>18}")
    print(
        f"{'fixed ' + str(rate) + ' ev/s: ack p50 (ms)':34}{fmt(fixed_ec['p50'], '.2f'):>14}"
        f"{fmt(fixed_sdk['p50'], '.2f'):>18}"
    )
    print(
        f"{'fixed ' + str(rate) + ' ev/s: ack p99 (ms)':34}{fmt(fixed_ec['p99'], '.2f'):>14}"
        f"{fmt(fixed_sdk['p99'], '.2f'):>18}"
    )
    print(f"{'fixed: fully processed ev/s':34}{fmt(fixed_ec.get('processed_per_s')):>14}{'—':>18}")
    print(f"{'max speed: acked ev/s':34}{fmt(max_ec['acked_per_s']):>14}{fmt(max_sdk['acked_per_s']):>18}")
    print(f"{'max speed: fully processed ev/s':34}{fmt(max_ec.get('processed_per_s')):>14}{'(no-op)':>18}")
    ec_ack = f"{fmt(max_ec['p50'])} / {fmt(max_ec['p99'])}"
    sdk_ack = f"{fmt(max_sdk['p50'])} / {fmt(max_sdk['p99'])}"
    print(f"{'max speed: ack p50 / p99 (ms)':34}{ec_ack:>14}{sdk_ack:>18}")
    print(
        f"{'redelivered (missed 3 s ack)':34}{max_ec['redelivered'] + fixed_ec['redelivered']:>14}"
        f"{max_sdk['redelivered'] + fixed_sdk['redelivered']:>18}"
    )
    print(f"{'EchoCenter peak RSS (MiB)':34}{fmt(rss):>14}")
    processed = max_ec.get("processed_per_s")
    if processed and max_sdk["acked_per_s"]:
        ratio = processed / max_sdk["acked_per_s"]
        print(f"throughput ratio (EchoCenter fully processed / SDK no-op acked): {ratio:.2f}")
    if max_ec["acked_per_s"] and max_sdk["acked_per_s"]:
        ack_ratio = max_ec["acked_per_s"] / max_sdk["acked_per_s"]
        print(f"ack ratio (EchoCenter acked / SDK no-op acked): {ack_ratio:.2f}")
    print(
        f"{'/metrics, fixed: ack p99 bucket (ms)':34}"
        f"{fmt(_ms(fixed_metrics['ack_p99_ms']), '.0f'):>14}  (upper bound of the histogram bucket)"
    )
    if answers:
        print(f"{'fixed: answered msg/s':34}{fmt(_rate(fixed_ec)):>14}{'—':>18}")
        fixed_answer = f"{fmt(fixed_ec['answer_ms_p50'], '.0f')} / {fmt(fixed_ec['answer_ms_p99'], '.0f')}"
        print(f"{'fixed: pushed → reply p50/p99 (ms)':34}{fixed_answer:>14}{'—':>18}")
        print(
            f"{'/metrics, fixed: answer p99 bucket':34}"
            f"{fmt(_ms(fixed_metrics['answer_p99_ms']), '.0f'):>14}  (handed to the Butler → reply accepted)"
        )
        print(f"{'max speed: answered msg/s':34}{fmt(_rate(max_ec)):>14}{fmt(max_sdk['acked_per_s']):>18}")
        max_answer = f"{fmt(max_ec['answer_ms_p50'], '.0f')} / {fmt(max_ec['answer_ms_p99'], '.0f')}"
        print(f"{'max speed: pushed → reply p50/p99':34}{max_answer:>14}")
        print(f"{'max speed: replies sent (/metrics)':34}{sent_max:>14.0f}")
        answered_rate = _rate(max_ec)
        if answered_rate and max_sdk["acked_per_s"]:
            ratio = answered_rate / max_sdk["acked_per_s"]
            print(f"answer ratio (EchoCenter answered / SDK no-op acked, same run): {ratio:.2f}")
        print(
            f"answered: {fixed_ec['answered']}/{int(rate * 10)} fixed, {max_ec['answered']}/{count} max speed"
        )
    done = max_ec.get("processed")
    print(f"events: {count} at max speed, {int(rate * 10)} at {rate}/s; processed {done}/{count}")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _rate(phase: dict[str, Any]) -> float | None:
    rate: float | None = phase.get("answered_per_s")
    return rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000, help="events per max-speed phase")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in the fixed-rate phase")
    parser.add_argument(
        "--butler",
        choices=["noop", "real"],
        default="noop",
        help="noop: the ingress alone (the issue's measure); real: the Butler answers each message",
    )
    parser.add_argument(
        "--chats",
        type=int,
        default=None,
        help="chats the messages go round, one person writing in each (default: 1 with the no-op Butler, "
        "50 with the real one: Feishu takes at most 5 messages/s per chat, and replies in a chat go one "
        "at a time, in order)",
    )
    args = parser.parse_args()
    chats = args.chats if args.chats is not None else (1 if args.butler == "noop" else 50)
    asyncio.run(main(args.count, args.rate, args.butler == "noop", chats))
