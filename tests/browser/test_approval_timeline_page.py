"""The approvals page shows who voted (by name), the quorum's progress, the timeline and the audit check
(issue 12), in a real browser against the real server, the emulator and a real agent."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.browser.test_admin_page import log_in
from tests.conftest import Server
from tests.e2e.harness import agent_running, create_verified_connector, register_agent
from tests.e2e.test_approval_policy import add_people
from tests.support.emulator import RunningEmulator
from tests.support.waiting import eventually


async def test_votes_names_and_the_timeline_on_the_approvals_page(
    browser: Browser, server: Server, emu: RunningEmulator
) -> None:
    await add_people(emu)
    await create_verified_connector(server, approvers=["ou_bob", "ou_carol"], approvals_required=2)
    token = await register_agent(server.client)
    page = await browser.new_page()
    await log_in(page, server)
    await expect(page.locator("#f-approvals_required")).to_have_value("2")
    await expect(page.locator("#f-allow_self_approval")).not_to_be_checked()  # four-eyes by default
    async with agent_running(server, token):
        await emu.control(
            "POST",
            "/messages",
            {"chat_id": "oc_ops", "sender": "ou_alice", "text": "run demo-agent uptime", "mention_bot": True},
        )

        async def carded() -> list[dict[str, str]]:
            items: list[dict[str, str]] = (await server.client.get("/api/approvals")).json()
            return [a for a in items if a["card_message_id"]]

        [approval] = await eventually(carded)
        card_id = approval["card_message_id"]
        await page.click('a[data-view="approvals"]')
        pending = page.locator(f'article.approval[data-approval="{approval["id"]}"]')
        await expect(pending).to_contain_text("Alice")  # the requester by name
        await emu.control(
            "POST", "/cards/click", {"message_id": card_id, "operator": "ou_bob", "button": "Approve"}
        )
        await page.click('a[data-view="approvals"]')  # shown again: fresh from the API
        await expect(pending.locator(".votes-title")).to_have_text("1 of 2 approvals")
        await expect(pending.locator(".votes")).to_contain_text("Bob approved")
        await shot(page, "12-approval-one-of-two")
        await emu.control(
            "POST",
            "/cards/click",
            {
                "message_id": card_id,
                "operator": "ou_carol",
                "button": "Reject",
                "form_value": {"note": "not before the release"},
            },
        )
        await page.click('a[data-view="approvals"]')
        await expect(pending).to_contain_text("REJECTED")
        await expect(pending).to_contain_text("Carol Wu, ")  # who decided, by name
        await expect(pending.locator(".votes")).to_contain_text("Carol Wu rejected")
        await expect(pending.locator(".votes")).to_contain_text("not before the release")
        await pending.locator(".timeline summary").click()
        events = pending.locator(".timeline-events li")
        await expect(events.first).to_contain_text("asked for it")
        await expect(pending.locator('.timeline-events li[data-kind="vote"]')).to_have_count(2)
        await expect(pending.locator('.timeline-events li[data-kind="decided"]')).to_contain_text("rejected")
        await page.click("#verify-trail")
        await expect(page.locator("#approvals-message")).to_contain_text("Audit trail intact")
        await shot(page, "13-approval-timeline")
    await page.close()
