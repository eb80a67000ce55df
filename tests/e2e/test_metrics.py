"""GET /metrics: what a test does shows up in the figures, exactly; the endpoint can be turned off or put
behind a bearer token; no label carries user text."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings, running_server
from tests.e2e.harness import create_verified_connector, e2e_settings, serve_echocenter
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.waiting import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_happened(database: Database, tmp_path: Path, emu: RunningEmulator) -> None:
    secret_text = "my-private-words-42"
    async with serve_echocenter(e2e_settings(database, tmp_path, emu.url), None) as server:
        connector_id = await create_verified_connector(server, mention_required=True)

        async def connected() -> bool:
            return value(await scrape(server.client), "echocenter_long_connections", state="connected") == 1

        await eventually(connected)
        before = await scrape(server.client)
        await emu.control("POST", "/faults", {"fail_next_sends": {"count": 1, "kind": "rate_limit"}})
        asked = [
            (
                await emu.control(
                    "POST",
                    "/messages",
                    {"chat_id": "oc_ops", "sender": "ou_alice", "text": t, "mention_bot": True},
                )
            )["message_id"]
            for t in ("help", "agents", f"help {secret_text}")
        ]
        await emu.control("POST", "/messages", {"chat_id": "oc_ops", "sender": "ou_bob", "text": secret_text})

        async def all_replied() -> bool:
            items = (await emu.control("GET", "/chats/oc_ops/messages"))["items"]
            return {m["parent_id"] for m in items if m["sender_type"] == "app"} >= set(asked)

        await eventually(all_replied)

        async def filtered_logged() -> bool:
            logs = (
                await server.client.get(
                    f"/api/integrations/feishu/{connector_id}/logs", params={"action": "ws_filtered"}
                )
            ).json()["items"]
            return len(logs) == 1

        await eventually(filtered_logged)

        async def answers_recorded() -> Samples | None:
            # The answer latency is observed just after Feishu accepted the reply, so the reply can be seen
            # in the chat a moment before its figures: wait for them, then compare exactly.
            scraped = await scrape(server.client)
            counts = [
                value(scraped, name) - value(before, name)
                for name in (
                    "echocenter_answer_latency_seconds_count",
                    "echocenter_outbox_send_latency_seconds_count",
                )
            ]
            return scraped if min(counts) >= 3 and value(scraped, "echocenter_outbox_depth") == 0 else None

        after = await eventually(answers_recorded)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("echocenter_events_received_total", transport="ws") == 4
    assert delta("echocenter_events_acked_total") == 4
    assert delta("echocenter_ack_latency_seconds_count") == 4
    assert delta("echocenter_events_outcome_total", outcome="admitted", reason="") == 3
    assert delta("echocenter_events_outcome_total", outcome="filtered", reason="mention_required") == 1
    assert delta("echocenter_butler_brain_seconds_count") == 3
    assert delta("echocenter_answer_latency_seconds_count") == 3
    assert delta("echocenter_outbox_sent_total", kind="text") == 3
    assert delta("echocenter_outbox_send_latency_seconds_count") == 3
    assert delta("echocenter_feishu_refusals_total", code="99991400") == 1  # the one injected
    assert value(after, "echocenter_outbox_depth") == 0
    assert value(after, "echocenter_outbox_oldest_age_seconds") == 0
    assert value(after, "echocenter_approvals", state="PENDING") == 0
    assert value(after, "echocenter_agents_online") == 0
    assert value(after, "echocenter_long_connections", state="connected") == 1
    assert value(after, "echocenter_token_refreshes_total") >= 1
    label_values = {v for _, labels in after for _, v in labels}
    assert not any(secret_text in v or "ou_alice" in v or "oc_ops" in v for v in label_values)


async def test_outbox_depth_and_age_show_replies_waiting(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    settings = e2e_settings(database, tmp_path, emu.url, feishu_send_qps_per_chat=1)
    async with serve_echocenter(settings, None) as server:
        await create_verified_connector(server, mention_required=True)
        await eventually(lambda: _connected(emu))
        for sender in ("ou_alice", "ou_bob", "ou_alice", "ou_bob"):
            await emu.control(
                "POST",
                "/messages",
                {"chat_id": "oc_ops", "sender": sender, "text": "help", "mention_bot": True},
            )

        async def waiting() -> float:
            samples = await scrape(server.client)
            depth = value(samples, "echocenter_outbox_depth")
            return depth if depth >= 2 and value(samples, "echocenter_outbox_oldest_age_seconds") > 0 else 0

        await eventually(waiting)  # paced at 1/s in that chat, replies queue up

        async def drained() -> bool:
            return value(await scrape(server.client), "echocenter_outbox_depth") == 0

        await eventually(drained, timeout=20)


async def test_metrics_can_be_turned_off_or_need_a_token(database: Database, tmp_path: Path) -> None:
    async with (
        running_server(make_settings(database, tmp_path, metrics_enabled=False)) as server,
        httpx.AsyncClient(base_url=server.url) as anonymous,
    ):
        response = await anonymous.get("/metrics")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    token = "scrape-token-0123456789abcdef"
    async with (
        running_server(make_settings(database, tmp_path, metrics_token=token)) as server,
        httpx.AsyncClient(base_url=server.url) as anonymous,
    ):
        refused = await anonymous.get("/metrics")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
        wrong = await anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await anonymous.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "echocenter_outbox_depth" in ok.text
        assert token not in ok.text


async def _connected(emu: RunningEmulator) -> bool:
    return bool((await emu.control("GET", "/connections"))["items"])
