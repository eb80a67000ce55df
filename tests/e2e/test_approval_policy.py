"""Approvals a security team would sign off (issue 12): four-eyes, quorum, names, decisions with words, the
tamper-evident timeline and its export, reminders, escalation and delivery to the approvers' DMs — over the
emulator's real protocol, with a real agent, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from echocenter.emulator.openapi import CONTACT_SCOPES
from tests.e2e.harness import (
    AGENT,
    Stack,
    asked,
    create_verified_connector,
    register_agent,
    serve_echocenter,
    story_settings,
    story_with_agent,
)
from tests.support.databases import Database, fresh_database
from tests.support.db_peek import execute_behind_the_service
from tests.support.emulator import APP_ID, RunningEmulator
from tests.support.waiting import eventually

APPROVERS = ["ou_bob", "ou_carol", "ou_erin"]


async def add_people(emu: RunningEmulator) -> None:
    await emu.control("POST", "/users", {"name": "Carol Wu", "open_id": "ou_carol", "user_id": "carol"})
    await emu.control("POST", "/users", {"name": "Erin Li", "open_id": "ou_erin", "user_id": "erin"})


async def vote(
    story: Stack,
    card_id: str,
    approval_id: int,
    decision: str,
    operator: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Click Approve / Reject on a card as ``operator``, with the card form's note when given. The button
    carries ``approval_id`` (checked here, so a test never clicks the wrong card)."""
    body: dict[str, Any] = {"message_id": card_id, "operator": operator}
    form = (await card_now(story, card_id))["elements"][-1]
    if form["tag"] == "form":  # a pending card: click its button (which must name this approval)
        [button] = [
            b for b in form["elements"] if b["tag"] == "button" and b["value"]["decision"] == decision
        ]
        assert button["value"]["approval_id"] == approval_id
        body["button"] = button["text"]["content"]
    else:  # a collapsed card, clicked on a screen that still shows the buttons
        body["value"] = {"approval_id": approval_id, "decision": decision}
    if note is not None:
        body["form_value"] = {"note": note}
    result: dict[str, Any] = await story.emu.control("POST", "/cards/click", body)
    return result


async def approval_of(story: Stack, card_id: str) -> dict[str, Any]:
    """The approval a card shows (its card_message_id is stored just after Feishu accepted the card)."""

    async def carded() -> list[dict[str, Any]]:
        return [a for a in await story.approvals() if a["card_message_id"] == card_id]

    found = await eventually(carded)
    return found[0]


async def kinds(story: Stack, approval_id: int) -> list[str]:
    return [e["kind"] for e in (await story.approval(approval_id))["events"]]


async def card_now(story: Stack, message_id: str) -> dict[str, Any]:
    """The card as Feishu now shows it (after every update)."""
    card: dict[str, Any] = json.loads(story.emu.world.messages[message_id].content)
    return card


def text_of(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


@pytest.fixture
async def team(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    """Alice asks; Bob, Carol Wu and Erin Li approve; four-eyes on (the default); a quorum of two."""
    await add_people(emu)
    connector = {"approvers": APPROVERS, "approvals_required": 2, "allow_self_approval": False}
    async with story_with_agent(database, tmp_path, emu, connector=connector) as story:
        yield story


async def test_four_eyes_refuses_self_approval_and_another_approver_decides(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    connector = {"approvers": ["ou_alice", "ou_bob"], "allow_self_approval": False}
    async with story_with_agent(database, tmp_path, emu, connector=connector) as story:
        assert (await story.api.get(f"/api/integrations/feishu/{story.connector_id}")).json()[
            "allow_self_approval"
        ] is False
        _, card, approval = await asked(story)  # Alice asks, and is an approver
        own = await vote(story, card["message_id"], approval["id"], "approve", "ou_alice")
        assert own["toast"]["type"] == "error" and "four-eyes" in own["toast"]["content"]
        refused = [
            e["detail"] for e in await story.logs("ws_auth_card_decision") if e["detail"].get("refused")
        ]
        assert [(r["reason"], r["operator"]) for r in refused] == [("self approval", "ou_alice")]
        assert (await story.approval(approval["id"]))["status"] == "PENDING"
        other = await vote(story, card["message_id"], approval["id"], "approve", "ou_bob")
        assert other["toast"]["type"] == "success"
        done = await story.settled(approval["id"])
        assert done["status"] == "EXECUTED" and done["decided_by"] == "ou_bob"


async def test_quorum_two_of_three_with_a_repeated_vote_and_names(team: Stack) -> None:
    story = team
    _, card, approval = await asked(story)
    assert approval["approvals_required"] == 2
    assert approval["requested_by_name"] == "Alice"  # from the contact API
    first = await vote(story, card["message_id"], approval["id"], "approve", "ou_bob")
    assert first["toast"] == {"type": "success", "content": "Your approval is counted: 1 of 2 approvals."}
    shown = first["response"]["card"]["data"]
    assert "1 of 2 approvals: Bob" in text_of(shown) and "Approve" in text_of(shown)  # still clickable
    again = await vote(story, card["message_id"], approval["id"], "approve", "ou_bob")
    assert again["toast"]["content"] == "You have already voted on this request: 1 of 2 approvals."
    assert (await story.approval(approval["id"]))["status"] == "PENDING"
    second = await vote(story, card["message_id"], approval["id"], "approve", "ou_carol", note="looks fine")
    assert second["toast"]["content"] == "Approved: running it now."
    done = await story.settled(approval["id"])
    assert done["status"] == "EXECUTED"
    assert [(v["voter"], v["name"], v["note"]) for v in done["votes"]] == [
        ("ou_bob", "Bob", None),
        ("ou_carol", "Carol Wu", "looks fine"),
    ]

    async def timeline_with_result() -> list[str] | None:
        # The final status is stored a moment before the ``result`` entry: wait for it, then compare all.
        seen = await kinds(story, approval["id"])
        return seen if seen[-1:] == ["result"] else None

    assert await eventually(timeline_with_result) == [
        "requested",
        "card_sent",
        "vote",
        "vote",
        "decided",
        "directive_sent",
        "result",
    ]
    [result] = await eventually(story.result_messages)
    assert "approved by Bob, Carol Wu" in result["content"]["text"]  # names in the chat reply


async def test_a_concurrent_pair_of_votes_approves_exactly_once(team: Stack) -> None:
    story = team
    _, card, approval = await asked(story)
    await story.emu.control("POST", "/config", {"card_response_timeout_seconds": 3.0})
    answers = await asyncio.gather(
        vote(story, card["message_id"], approval["id"], "approve", "ou_bob"),
        vote(story, card["message_id"], approval["id"], "approve", "ou_carol"),
    )
    toasts = sorted(a["toast"]["content"] for a in answers)
    # Both votes count; whichever counted last completes the quorum, and the move happens once.
    assert "Approved: running it now." in toasts
    done = await story.settled(approval["id"])
    assert done["status"] == "EXECUTED" and len(done["votes"]) == 2
    assert (await kinds(story, approval["id"])).count("decided") == 1
    await eventually(story.result_messages)
    assert len(await story.logs("approval_result")) == 1
    decisions = [e for e in await story.logs("ws_auth_card_decision") if e["detail"].get("decision")]
    assert len(decisions) == 1


async def test_a_reject_with_a_reason_from_the_card_form_ends_it_after_one_approval(team: Stack) -> None:
    story = team
    _, card, approval = await asked(story)
    await vote(story, card["message_id"], approval["id"], "approve", "ou_bob", note="fine by me")
    rejected = await vote(
        story, card["message_id"], approval["id"], "reject", "ou_carol", note="not during the release"
    )
    assert rejected["toast"]["content"] == "Rejected."
    collapsed = text_of(rejected["response"]["card"]["data"])
    assert "Reason: not during the release" in collapsed and "Approve" not in collapsed
    assert "Carol Wu rejected" in collapsed and "Bob approved" in collapsed
    done = await story.settled(approval["id"])
    assert done["status"] == "REJECTED" and done["decision_reason"] == "not during the release"
    events = (await story.approval(approval["id"]))["events"]
    votes = [
        (e["actor_name"], e["detail"]["decision"], e["detail"].get("note"))
        for e in events
        if e["kind"] == "vote"
    ]
    assert votes == [("Bob", "approve", "fine by me"), ("Carol Wu", "reject", "not during the release")]
    late = await vote(story, card["message_id"], approval["id"], "approve", "ou_erin")
    assert late["toast"]["content"].startswith("Already rejected")


async def test_names_fall_back_to_open_ids_when_contact_access_is_refused(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    await emu.control("PATCH", f"/apps/{APP_ID}", {"missing_scopes": list(CONTACT_SCOPES)})
    async with story_with_agent(database, tmp_path, emu) as story:
        _, card, approval = await asked(story)
        assert approval["requested_by_name"] == "ou_alice"
        assert "Asked by: ou_alice" in text_of(card["content"])
        await story.say(f"run {AGENT} whoami", sender="ou_bob")  # another lookup, also refused

        async def two_asked() -> bool:
            return len(await story.approvals()) == 2

        await eventually(two_asked)
        refusals = await story.logs("contact_lookup_refused")
        assert len(refusals) == 1 and refusals[0]["detail"]["feishu_code"] == 99991672  # logged once


async def test_the_timeline_exports_and_a_tampered_row_is_detected(story: Stack) -> None:
    _, card, approval = await asked(story)
    await story.click(card["message_id"], "Approve")
    await story.settled(approval["id"])
    await eventually(lambda: _has_result_event(story, approval["id"]))

    jsonl = await story.api.get("/api/approvals/export", params={"format": "jsonl", "status": "EXECUTED"})
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith("application/x-ndjson")
    [record] = [json.loads(line) for line in jsonl.text.splitlines()]
    assert record["id"] == approval["id"] and record["events"][0]["kind"] == "requested"
    empty = await story.api.get("/api/approvals/export", params={"format": "jsonl", "status": "REJECTED"})
    assert empty.text == ""
    as_csv = await story.api.get(
        "/api/approvals/export", params={"format": "csv", "from": "2000-01-01T00:00:00Z"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["event_kind"] for r in rows] == [e["kind"] for e in record["events"]]
    assert rows[0]["requested_by_name"] == "Alice" and rows[0]["hash"] == record["events"][0]["hash"]
    bad = await story.api.get("/api/approvals/export", params={"format": "xml"})
    assert bad.status_code == 422 and bad.json()["error"]["code"]
    member = await story.server.create_member()
    forbidden = await story.api.get("/api/approvals/export", headers={"Authorization": f"Bearer {member}"})
    assert forbidden.status_code == 403

    intact = (await story.api.get("/api/approvals/audit/verify")).json()
    assert intact["ok"] is True and intact["checked"] == len(record["events"])
    # Someone with database access rewrites history: the vote now says it was Bob.
    vote_event = next(e for e in record["events"] if e["kind"] == "vote")
    await _edit_event(story, vote_event["id"])
    broken = (await story.api.get("/api/approvals/audit/verify")).json()
    assert broken["ok"] is False and broken["broken_at"] == vote_event["id"]
    assert broken["approval_id"] == approval["id"] and "hash" in broken["problem"]


async def _has_result_event(story: Stack, approval_id: int) -> bool:
    return "result" in await kinds(story, approval_id)


async def _edit_event(story: Stack, event_id: int) -> None:
    from sqlalchemy import update

    from echocenter.db.models import ApprovalEvent

    statement = (
        update(ApprovalEvent).where(ApprovalEvent.id == event_id).values(actor="ou_bob", actor_name="Bob")
    )
    await execute_behind_the_service(story.server.settings, statement)


async def test_a_reminder_dm_goes_to_each_approver_once_and_escalation_adds_approvers(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    await add_people(emu)
    connector = {"approvers": ["ou_bob", "ou_carol"], "escalation_approvers": ["ou_erin"]}
    async with story_with_agent(
        database,
        tmp_path,
        emu,
        connector=connector,
        approval_remind_after=1,
        approval_escalate_after=4,
    ) as story:
        _, card, first = await asked(story)
        early = await vote(story, card["message_id"], first["id"], "approve", "ou_erin")
        assert early["toast"]["content"] == "You are not allowed to approve commands here."

        async def escalated() -> bool:
            return "escalated" in await kinds(story, first["id"])

        await eventually(escalated)
        # A second request; once its reminder went out, the first one's sweep has long been done.
        second_message = await story.say(f"run {AGENT} whoami")
        await story.card_for(second_message)
        second = next(a for a in await story.approvals() if a["id"] != first["id"])

        async def reminded_second() -> bool:
            return "reminded" in await kinds(story, second["id"])

        await eventually(reminded_second)
        for person in ("ou_bob", "ou_carol"):
            dm = story.emu.world.p2p_chat_with(person).chat_id
            cards = [m for m in await story.bot_messages(dm) if m["msg_type"] == "interactive"]
            titles = [c["content"]["elements"][1]["text"]["content"] for c in cards]
            assert titles.count("Command: uptime") == 1, titles  # the first request: one reminder, once
        erin_dm = story.emu.world.p2p_chat_with("ou_erin").chat_id
        [erin_card] = [m for m in await story.bot_messages(erin_dm) if "uptime" in json.dumps(m["content"])]
        answer = await vote(story, erin_card["message_id"], first["id"], "approve", "ou_erin")
        assert answer["toast"]["content"] == "Approved: running it now."
        assert (await story.settled(first["id"]))["status"] == "EXECUTED"

        async def every_copy_updated() -> bool:
            copies = [card["message_id"]]
            for person in ("ou_bob", "ou_carol"):
                dm = story.emu.world.p2p_chat_with(person).chat_id
                copies += [m["message_id"] for m in await story.bot_messages(dm) if "uptime" in json.dumps(m)]
            titles = [(await card_now(story, c))["header"]["title"]["content"] for c in copies]
            return len(copies) == 3 and all("done" in t for t in titles)

        await eventually(every_copy_updated)


async def test_delivery_to_the_approvers_dms_updates_every_copy(
    database: Database, tmp_path: Path, emu: RunningEmulator
) -> None:
    await add_people(emu)
    connector = {"approvers": ["ou_bob", "ou_carol"], "approval_delivery": "approvers"}
    async with story_with_agent(database, tmp_path, emu, connector=connector) as story:
        message_id = await story.say(f"run {AGENT} uptime")

        async def notice() -> bool:
            return any(
                "went to 2 approver(s) by direct message" in m["content"].get("text", "")
                for m in await story.bot_messages()
                if m["parent_id"] == message_id
            )

        await eventually(notice)
        assert not [m for m in await story.bot_messages() if m["msg_type"] == "interactive"]  # no card here

        async def dm_cards() -> list[dict[str, Any]]:
            found = []
            for person in ("ou_bob", "ou_carol"):
                chat = story.emu.world.p2p_chat_with(person).chat_id
                found += [m for m in await story.bot_messages(chat) if m["msg_type"] == "interactive"]
            return found if len(found) == 2 else []

        bob_card, carol_card = await eventually(dm_cards)
        [approval] = await story.approvals()
        answer = await vote(story, carol_card["message_id"], approval["id"], "approve", "ou_carol")
        assert answer["toast"]["content"] == "Approved: running it now."
        await story.settled(approval["id"])

        async def bobs_copy_done() -> bool:
            return "done" in (await card_now(story, bob_card["message_id"]))["header"]["title"]["content"]

        await eventually(bobs_copy_done)
        # A click on a copy that is not this approval's card is still refused.
        forged = await story.emu.bot_sends_card({"config": {"update_multi": True}, "elements": []})
        refused = await story.emu.control(
            "POST",
            "/cards/click",
            {
                "message_id": forged,
                "operator": "ou_bob",
                "value": {"approval_id": approval["id"], "decision": "reject"},
            },
        )
        assert refused["toast"]["content"] == "This button does not belong to this request."


async def test_concurrent_votes_on_two_instances_approve_exactly_once(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    """Two EchoCenter instances on one PostgreSQL, each with its own long connection: Feishu hands every
    click to one of them at random, so the two last votes of a quorum often land on different instances."""
    await add_people(emu)
    async with fresh_database("postgresql", tmp_path) as database:
        settings = story_settings(database, tmp_path, emu)
        async with serve_echocenter(settings, None) as first:
            await create_verified_connector(
                first, approvers=["ou_bob", "ou_carol"], approvals_required=2, rate_limit_per_minute=1000
            )
            await register_agent(first.client)  # known, never online: cards need a registered agent
            async with serve_echocenter(settings, None) as second:

                async def two_connections() -> bool:
                    return len((await emu.control("GET", "/connections"))["items"]) == 2

                await eventually(two_connections)
                story = Stack(first, emu, 1)
                for n in range(3):
                    message_id = await story.say(f"run {AGENT} uptime #{n}")
                    card = await story.card_for(message_id)

                    approval = await approval_of(story, card["message_id"])
                    await asyncio.gather(
                        vote(story, card["message_id"], approval["id"], "approve", "ou_bob"),
                        vote(story, card["message_id"], approval["id"], "approve", "ou_carol"),
                    )
                    done = await story.settled(
                        approval["id"]
                    )  # no agent: it fails, after being approved once
                    seen_by_second = Stack(second, emu, 1)
                    events = [e["kind"] for e in (await seen_by_second.approval(approval["id"]))["events"]]
                    assert events.count("vote") == 2 and events.count("decided") == 1, events
                    assert done["status"] in ("EXECUTED", "FAILED") and len(done["votes"]) == 2
                handled = {d["ack_device_id"] for d in (await emu.control("GET", "/deliveries"))["items"]}
                assert len(handled) == 2  # both instances took part
                assert (await story.api.get("/api/approvals/audit/verify")).json()["ok"] is True
