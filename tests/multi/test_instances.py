"""Several instances on one PostgreSQL: connectors, agents and approvals work whichever instance a request,
an event or an agent lands on."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from typing import Any

import asyncpg
import pytest

from echocenter.agents.example import AgentStop, run_agent
from tests.conftest import ADMIN_USER
from tests.multi.conftest import Cluster, Instance
from tests.support.databases import POSTGRES_URL
from tests.support.emulator import APP_ID
from tests.support.waiting import eventually


async def test_three_instances_started_together_on_an_empty_database_all_come_up(cluster: Cluster) -> None:
    # The fixture started them at the same moment on an empty schema: migrations and the first admin raced.
    assert all(instance.service.alive() for instance in cluster.instances)
    for instance in cluster.instances:
        users = (await instance.api.get("/api/users")).json()
        assert [u["username"] for u in users] == [ADMIN_USER]
        assert "already exists" not in instance.service.log_tail(100_000)


async def test_changes_made_on_one_instance_reach_every_instance(cluster: Cluster) -> None:
    first = cluster[0]
    connector_id = await cluster.create_connector(first)
    body = await cluster.wait_connected_everywhere(connector_id)
    assert sorted(i["instance_id"] for i in body["instances"]) == [i.id for i in cluster.instances]
    assert body["status"] == "connected" and body["last_error"] is None

    # Rotation: Feishu issues a new App Secret; it is stored through instance 1 only.
    rotated = "rotated-secret-" + os.urandom(8).hex()
    cluster.emu.world.apps[APP_ID].app_secret = rotated
    patched = await first.api.patch(f"/api/integrations/feishu/{connector_id}", json={"app_secret": rotated})
    assert patched.status_code == 200, patched.text
    await cluster.verify_and_enable(first, connector_id)
    # Every connection is dropped: each instance must come back with the new secret (a refused one would
    # wait FEISHU_WS_BACKOFF_CAP = 30 s), and each sends with it.
    await cluster.emu.emulator.hub.drop_all()
    await cluster.wait_connected_everywhere(connector_id, timeout=8)
    for instance in cluster.instances:
        sent = await instance.api.post(
            f"/api/integrations/feishu/{connector_id}/test-message", json={"chat_id": "oc_ops", "text": "hi"}
        )
        assert sent.status_code == 200, (instance.id, sent.text)

    # Deletion through instance 3: every instance closes its connection within a second or so.
    deleted = await cluster[2].api.delete(f"/api/integrations/feishu/{connector_id}")
    assert deleted.status_code == 204

    async def none_left() -> bool:
        return await cluster.app_connections() == 0

    await eventually(none_left, timeout=3)
    for instance in cluster.instances:
        assert (await instance.api.get(f"/api/integrations/feishu/{connector_id}")).status_code == 404

    # An agent held by instance 2 and revoked through instance 1: its socket closes, and it is refused.
    registered = (await first.api.post("/api/agents", json={"name": "revokee"})).json()
    agent = asyncio.create_task(
        run_agent(cluster[1].service.url, registered["token"], allowed=frozenset({"whoami"}), heartbeat=0.5)
    )

    async def online() -> bool:
        return bool((await cluster[2].api.get("/api/agents")).json()["items"][0]["online"])

    await eventually(online, timeout=5)
    assert (await first.api.delete(f"/api/agents/{registered['id']}")).status_code == 200
    with pytest.raises(AgentStop, match="refused"):
        await asyncio.wait_for(agent, 10)


async def _pg(cluster: Cluster) -> asyncpg.Connection:
    return await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": cluster.database.schema})


async def _approved_behind_the_bus(cluster: Cluster, *, agent: str, command: str) -> int:
    """An APPROVED row whose directive notice never went out (as if lost on the way)."""
    conn = await _pg(cluster)
    try:
        approval_id: int = await conn.fetchval(
            "INSERT INTO approvals (status, agent_name, command, reason, request_id, requested_by_open_id,"
            " requested_by_name, chat_id, source_message_id, created_at, expires_at, decided_at, decided_by)"
            " VALUES ('APPROVED', $1, $2, '', $3, '', '', '', '',"
            " now(), now() + interval '10 minutes', now(), 'admin:test') RETURNING id",
            agent,
            command,
            "missed-" + os.urandom(6).hex(),
        )
        return approval_id
    finally:
        await conn.close()


async def _drop_bus_listener(cluster: Cluster, instance: Instance) -> None:
    conn = await _pg(cluster)
    try:
        dropped = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"echocenter-bus {instance.id}",
        )
        assert dropped == 1
    finally:
        await conn.close()


async def _approvals(instance: Instance, **params: Any) -> list[dict[str, Any]]:
    response = await instance.api.get("/api/approvals", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def test_commands_approved_on_any_instance_run_on_the_agent_another_instance_holds(
    cluster: Cluster,
) -> None:
    async with cluster.agent_online_everywhere() as (connector_id, holder):
        # The Butler on whichever instance gets the message knows the agent is online.
        said = await cluster.emu.control(
            "POST",
            "/messages",
            {"chat_id": "oc_ops", "sender": "ou_alice", "text": "agents", "mention_bot": True},
        )

        async def butler_answer() -> str | None:
            items = (await cluster.emu.control("GET", "/chats/oc_ops/messages"))["items"]
            for m in items:
                if m["parent_id"] == said["message_id"] and m["msg_type"] == "text":
                    return str(m["content"])
            return None

        assert "worker" in await eventually(butler_answer)

        # Ten requests, each delivered to a random instance, each answered with a card.
        for _ in range(10):
            await cluster.emu.control(
                "POST",
                "/messages",
                {"chat_id": "oc_ops", "sender": "ou_alice", "text": "run worker whoami", "mention_bot": True},
            )

        async def ten_pending() -> list[dict[str, Any]]:
            pending = [a for a in await _approvals(cluster[0], status="PENDING") if a["card_message_id"]]
            return pending if len(pending) == 10 else []

        # Twenty sends in one chat (a reply and a card each), paced at Feishu's 5/s per chat: give it time.
        pending = await eventually(ten_pending, timeout=45)
        await cluster.approve_away_from(holder, pending)

        async def all_finished() -> list[dict[str, Any]]:
            done = await _approvals(random.choice(cluster.instances))
            finished = [a for a in done if a["status"] in ("EXECUTED", "FAILED")]
            return done if len(finished) == 10 else []

        done = await eventually(all_finished, timeout=20)
        assert [a["status"] for a in done] == ["EXECUTED"] * 10, [a["output"] for a in done]
        assert all(a["output"].strip() for a in done)

        # A notice lost while the holder's listener was down: the approved row waits for nobody, until the
        # listener is back and the holder looks for what it missed.
        missed_id = await _approved_behind_the_bus(cluster, agent="worker", command="whoami")
        await _drop_bus_listener(cluster, holder)

        async def missed_ran() -> bool:
            approval = (await cluster[0].api.get(f"/api/approvals/{missed_id}")).json()
            return bool(approval["status"] == "EXECUTED")

        await eventually(missed_ran, timeout=10)

        # The holder dies without a word: after the heartbeat timeout its agent is offline everywhere else.
        os.kill(holder.service.process.pid, signal.SIGKILL)
        holder.service.process.wait()

        async def released() -> bool:
            agents = (await cluster[0].api.get("/api/agents")).json()["items"]
            connector = (await cluster[2].api.get(f"/api/integrations/feishu/{connector_id}")).json()
            return (
                not any(a["online"] for a in agents)
                and connector["status_summary"] == "connected on 2 of 2 instances"
            )

        await eventually(released, timeout=8)
