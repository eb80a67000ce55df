"""The seed's whole story through the emulator: a person writes, the Butler answers in the same chat, a
command waits for approval on a card, a click runs it exactly once on a real agent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import (
    AGENT,
    Stack,
    agent_running,
    asked,
    create_verified_connector,
    register_agent,
    serve_echocenter,
    story_settings,
    story_with_agent,
)
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.waiting import eventually


async def test_the_butler_answers_in_the_same_chat(story: Stack) -> None:
    message_id = await story.say("help")
    reply = await story.reply_to(message_id)
    assert "run <agent> <command>" in reply["content"]["text"]
    dm = await story.say("agents", chat_id="oc_p2p_alice")
    items = (await story.emu.control("GET", "/chats/oc_p2p_alice/messages"))["items"]
    answer = await eventually(lambda: _first(items, dm, story))
    assert AGENT in answer["content"]["text"]
    assert await story.logs("ws_outbound")


async def _first(_: Any, parent: str, story: Stack) -> dict[str, Any] | None:
    items = (await story.emu.control("GET", "/chats/oc_p2p_alice/messages"))["items"]
    return next((m for m in items if m["parent_id"] == parent and m["sender_type"] == "app"), None)


async def test_run_sends_an_approval_card(story: Stack) -> None:
    message_id, card, approval = await asked(story)
    content = card["content"]
    assert content["config"]["update_multi"] is True
    form = content["elements"][-1]
    assert form["tag"] == "form" and form["elements"][0]["tag"] == "input"
    buttons = [b["text"]["content"] for b in form["elements"] if b["tag"] == "button"]
    assert buttons == ["Approve", "Reject"]
    assert "uptime" in json.dumps(content) and AGENT in content["header"]["title"]["content"]
    assert (approval["agent_name"], approval["command"], approval["requested_by_open_id"]) == (
        AGENT,
        "uptime",
        "ou_alice",
    )
    assert approval["card_message_id"] == card["message_id"] and approval["source_message_id"] == message_id
    assert (await story.logs("ws_auth_card"))[0]["detail"]["ok"] is True


async def test_approve_runs_the_command_once_and_reports_it(story: Stack) -> None:
    _, card, approval = await asked(story)
    click = await story.click(card["message_id"], "Approve")
    assert click["status"] == "answered" and click["toast"]["type"] == "success"
    collapsed = click["response"]["card"]["data"]
    assert "actions" not in json.dumps(collapsed) and "Approved by <at id=ou_alice></at>" in json.dumps(
        collapsed
    )
    done = await story.settled(approval["id"])
    assert done["status"] == "EXECUTED" and "load average" in done["output"]
    assert done["decided_by"] == "ou_alice"
    [result] = await eventually(story.result_messages)
    assert "load average" in result["content"]["text"]
    stored = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
    card_now = next(m for m in stored if m["message_id"] == card["message_id"])
    assert "done" in card_now["content"]["header"]["title"]["content"]
    decision = (await story.logs("ws_auth_card_decision"))[0]["detail"]
    assert (decision["decision"], decision["operator"]) == ("approved", "ou_alice")


async def test_reject_runs_nothing(story: Stack) -> None:
    _, card, approval = await asked(story)
    click = await story.click(card["message_id"], "Reject")
    assert "Rejected" in json.dumps(click["response"]["card"])
    assert (await story.settled(approval["id"]))["status"] == "REJECTED"
    await card_titled(story, card["message_id"], "Rejected")  # the decision's last effect has landed
    assert await story.result_messages() == []
    assert await story.logs("approval_result") == []


async def card_titled(story: Stack, card_id: str, title: str) -> None:
    """Wait until the card in the chat has been updated to ``title``."""

    async def updated() -> bool:
        stored = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
        card = next(m for m in stored if m["message_id"] == card_id)
        return bool(card["content"]["header"]["title"]["content"].startswith(title))

    await eventually(updated)


async def test_someone_not_an_approver_is_refused(story: Stack) -> None:
    _, card, approval = await asked(story)
    click = await story.click(card["message_id"], "Approve", operator="ou_bob")
    assert click["toast"] == {"type": "error", "content": "You are not allowed to approve commands here."}
    assert "card" not in click["response"]
    assert (await story.approval(approval["id"]))["status"] == "PENDING"
    refused = (await story.logs("ws_auth_card_decision"))[0]["detail"]
    assert refused["refused"] is True and refused["operator"] == "ou_bob"


async def test_a_second_click_changes_nothing(story: Stack) -> None:
    _, card, approval = await asked(story)
    await story.click(card["message_id"], "Approve")
    await story.settled(approval["id"])
    again = await story.click(card["message_id"], "Reject")
    assert again["toast"]["content"] == "Already executed by ou_alice."
    await eventually(story.result_messages)  # the first click's result, before counting
    assert len(await story.result_messages()) == 1
    assert len(await story.logs("approval_result")) == 1


async def test_concurrent_clicks_decide_exactly_once(story: Stack) -> None:
    _, card, approval = await asked(story)
    await story.emu.control("POST", "/config", {"card_response_timeout_seconds": 3.0})
    clicks = await asyncio.gather(
        *(story.click(card["message_id"], b) for b in ("Approve", "Reject", "Approve"))
    )
    # A loser hears the decision ("Already …") or, when its vote lost the race to the same person's
    # (approvals-12's votes), that the vote was counted before.
    losing = ("Already ", "You have already voted")
    winners = [c for c in clicks if not c["toast"]["content"].startswith(losing)]
    assert len(winners) == 1
    final = await story.settled(approval["id"])
    assert len([e for e in await story.logs("ws_auth_card_decision") if "decision" in e["detail"]]) == 1
    if final["status"] == "EXECUTED":
        await eventually(story.result_messages)  # the result, before counting
    else:
        await card_titled(story, card["message_id"], "Rejected")
    assert len(await story.result_messages()) == (1 if final["status"] == "EXECUTED" else 0)


async def test_an_offline_agent_fails_the_approval(story: Stack) -> None:
    await register_agent(story.api, "ghost-agent")  # known (cards are for registered agents), never online
    _, card, approval = await asked(story, "run ghost-agent uptime")
    await story.click(card["message_id"], "Approve")
    done = await story.settled(approval["id"])
    assert done["status"] == "FAILED" and "offline" in done["output"]
    [result] = await eventually(story.result_messages)
    assert result["content"]["text"].startswith("❌")


async def test_the_agent_refuses_commands_off_its_list(story: Stack) -> None:
    # The admin's list wins over the agent's declaration, yet the agent still refuses what it does not run.
    [agent] = (await story.api.get("/api/agents")).json()["items"]
    patched = await story.api.patch(f"/api/agents/{agent['id']}", json={"commands": ["rm -rf {path}"]})
    assert patched.status_code == 200, patched.text
    _, card, approval = await asked(story, f"run {AGENT} rm -rf /")
    await story.click(card["message_id"], "Approve")
    done = await story.settled(approval["id"])
    assert done["status"] == "FAILED" and "allow-list" in done["output"]


async def test_pending_approvals_expire_and_late_clicks_say_so(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    async with story_with_agent(database, tmp_path, emu, approval_ttl=5) as story:
        _, card, approval = await asked(story)

        async def expired() -> bool:
            return (await story.approval(approval["id"]))["status"] == "EXPIRED"

        await eventually(expired, timeout=15)

        async def card_says_expired() -> bool:
            stored = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
            now = next(m for m in stored if m["message_id"] == card["message_id"])
            return now["content"]["header"]["title"]["content"].startswith("Expired")

        await eventually(card_says_expired)
        late = await story.click(card["message_id"], "Approve")
        assert late["toast"] == {"type": "warning", "content": "This request has expired."}
        assert await story.result_messages() == []


async def test_a_pending_approval_survives_a_restart(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    settings = story_settings(database, tmp_path, emu)
    async with serve_echocenter(settings, None) as server:
        connector_id = await create_verified_connector(
            server, approvers=["ou_alice"], allow_self_approval=True
        )
        token = await register_agent(server.client)
        story = Stack(server, emu, connector_id)
        _, card, approval = await asked(story)
    async with serve_echocenter(settings, None) as server, agent_running(server, token):
        story = Stack(server, emu, connector_id)
        await eventually(lambda: _connected(emu))
        click = await story.click(card["message_id"], "Approve")
        assert click["status"] == "answered" and click["toast"]["type"] == "success"
        assert (await story.settled(approval["id"]))["status"] == "EXECUTED"


async def _connected(emu: RunningEmulator) -> bool:
    return bool((await emu.control("GET", "/connections"))["items"])


async def test_outbound_retries_after_5xx_and_rate_limit_without_duplicates(story: Stack) -> None:
    await story.emu.control("POST", "/faults", {"fail_next_sends": {"count": 1, "kind": "5xx"}})
    await story.emu.control(
        "POST", "/faults", {"fail_next_sends": {"count": 1, "kind": "rate_limit", "reset_seconds": 1}}
    )
    message_id = await story.say("status")
    reply = await story.reply_to(message_id)
    assert "approval(s) waiting" in reply["content"]["text"]

    async def sent_logged() -> bool:  # the outbox is done with the reply: its one send is logged
        return any(e["detail"]["ok"] for e in await story.logs("ws_outbound"))

    await eventually(sent_logged)
    assert len([m for m in await story.bot_messages() if m["parent_id"] == message_id]) == 1
    counters = (await story.emu.control("GET", "/counters"))["counters"]
    assert counters["fault.send_failure"] == 2
    # The outbox logs each refused attempt (a warning with Feishu's code, tried again), then the one send.
    entries = list(reversed(await story.logs("ws_outbound")))
    assert [(e["detail"]["ok"], e["level"]) for e in entries] == [(False, "warn")] * 2 + [(True, "info")]
    assert sorted(e["detail"]["feishu_code"] for e in entries[:2]) == [1, 99991400]


async def test_admins_decide_from_the_api_with_the_same_rule(story: Stack) -> None:
    _, card, approval = await asked(story)
    url = f"/api/approvals/{approval['id']}/decision"
    first = await story.api.post(url, json={"decision": "approve", "reason": "routine check"})
    assert first.status_code == 200 and first.json()["decided"] is True
    second = await story.api.post(url, json={"decision": "reject"})
    assert second.json()["decided"] is False and second.json()["approval"]["status"] != "REJECTED"
    done = await story.settled(approval["id"])
    assert done["status"] == "EXECUTED" and done["decided_by"] == "admin:admin"

    async def card_says_why() -> bool:  # the card is updated through the outbox, after the decision
        stored = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
        card_now = next(m for m in stored if m["message_id"] == card["message_id"])
        return "routine check" in json.dumps(card_now["content"])

    await eventually(card_says_why)
    bad = await story.api.post(url, json={"decision": "maybe"})
    assert bad.status_code == 422
    assert (
        await story.api.post("/api/approvals/999/decision", json={"decision": "approve"})
    ).status_code == 404
    member = await story.server.create_member()
    forbidden = await story.api.get("/api/approvals", headers={"Authorization": f"Bearer {member}"})
    assert forbidden.status_code == 403


async def test_agents_are_registered_listed_and_revoked(story: Stack) -> None:
    agents = (await story.api.get("/api/agents")).json()["items"]
    assert [(a["name"], a["online"]) for a in agents] == [(AGENT, True)]
    assert "token" not in agents[0]
    duplicate = await story.api.post("/api/agents", json={"name": AGENT})
    assert duplicate.status_code == 409
    revoked = await story.api.delete(f"/api/agents/{agents[0]['id']}")
    assert revoked.json()["revoked_at"] is not None

    async def offline() -> bool:
        return not (await story.api.get("/api/agents")).json()["items"][0]["online"]

    await eventually(offline)
    async with httpx.AsyncClient() as http:
        response = await http.get(story.server.url + "/api/agents")
        assert response.status_code == 401


async def test_the_test_message_route_really_sends(story: Stack) -> None:
    response = await story.api.post(
        f"/api/integrations/feishu/{story.connector_id}/test-message",
        json={"chat_id": "oc_ops", "text": "ping from the admin"},
    )
    assert response.status_code == 200, response.text
    sent = await story.bot_messages()
    assert sent[-1]["content"] == {"text": "ping from the admin"}
    assert sent[-1]["message_id"] == response.json()["message_ids"][0]


async def test_an_invalidated_tenant_token_is_refreshed_without_losing_the_reply(story: Stack) -> None:
    # No thinking reaction: the reply itself must be the call that meets the invalidated token.
    patched = await story.api.patch(
        f"/api/integrations/feishu/{story.connector_id}", json={"thinking_reaction": ""}
    )
    assert patched.status_code == 200, patched.text
    first = await story.say("help")
    await story.reply_to(first)
    await story.emu.control("POST", "/counters/reset")
    await story.emu.control("POST", "/faults", {"invalidate_tokens": True})
    second = await story.say("status")
    reply = await story.reply_to(second)
    assert "agent(s) online" in reply["content"]["text"]
    assert all(e["detail"]["ok"] for e in await story.logs("ws_outbound"))
    counters = (await story.emu.control("GET", "/counters"))["counters"]
    assert counters["POST /open-apis/auth/v3/tenant_access_token/internal"] == 1  # one refresh, on 99991663
    assert counters["POST /open-apis/im/v1/messages/{message_id}/reply"] == 2  # refused once, then sent


async def test_proactive_messages_go_to_the_latest_inbound_chat(story: Stack) -> None:
    url = f"/api/integrations/feishu/{story.connector_id}/test-message"
    await story.say("hello from the DM", chat_id="oc_p2p_alice")

    async def seen() -> bool:
        return bool(await story.logs("ws_routed"))

    await eventually(seen)
    response = await story.api.post(url, json={"text": "proactive"})
    assert response.status_code == 200, response.text
    assert response.json()["chat_id"] == "oc_p2p_alice"
    await story.patch_allowed(["oc_ops"])
    assert (await story.api.post(url, json={"text": "to the allowed chat"})).json()["chat_id"] == "oc_ops"


async def test_an_approved_command_whose_outcome_was_lost_is_failed_not_rerun(story: Stack) -> None:
    from datetime import timedelta

    from echocenter.db.types import utcnow
    from tests.support.rows import set_approval

    _, card, approval = await asked(story)
    # As if an instance approved it long ago and stopped before the agent's answer came back.
    long_ago = utcnow() - timedelta(minutes=10)
    await set_approval(
        story.server.settings, approval["id"], status="APPROVED", decided_by="ou_alice", decided_at=long_ago
    )
    done = await story.settled(approval["id"])
    assert done["status"] == "FAILED" and done["output"].startswith("interrupted")
    assert await story.result_messages() == []  # nothing ran

    async def card_failed() -> bool:
        stored = (await story.emu.control("GET", "/chats/oc_ops/messages"))["items"]
        now = next(m for m in stored if m["message_id"] == card["message_id"])
        return "failed" in now["content"]["header"]["title"]["content"]

    await eventually(card_failed)
