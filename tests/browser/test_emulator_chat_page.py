"""The emulator's chat page in a real browser: a person writes, sees the Butler's card, clicks Approve and
watches the card change and the output arrive."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.conftest import Server
from tests.e2e.harness import agent_running, create_verified_connector, register_agent
from tests.support.emulator import RunningEmulator


async def test_a_person_approves_a_command_from_the_chat_page(
    browser: Browser, server: Server, emu: RunningEmulator
) -> None:
    await create_verified_connector(server, approvers=["ou_alice"], allow_self_approval=True)
    token = await register_agent(server.client)
    async with agent_running(server, token):
        page = await browser.new_page()
        await page.goto(emu.url + "/")
        await page.select_option("#user", "ou_alice")
        await page.select_option("#chat", "oc_ops")
        await page.fill("#text", "run demo-agent uptime")
        await page.keyboard.press("Enter")
        card = page.locator(".msg.card").last
        await expect(card).to_contain_text("Approval needed", timeout=15_000)
        await expect(card).to_contain_text("uptime")
        await shot(page, "10-emulator-card")
        await card.get_by_role("textbox").fill("routine check from the chat")  # the card form's note
        await card.get_by_role("button", name="Approve").click()
        await expect(page.locator("#toast")).to_contain_text("Approved")
        await expect(card).to_contain_text("Approved by @Alice", timeout=15_000)
        await expect(card).to_contain_text("Note: routine check from the chat")
        await expect(page.locator(".msg", has_text="load average").last).to_be_visible(timeout=15_000)
        await expect(card.get_by_role("button", name="Approve")).to_have_count(0)  # collapsed: no buttons
        await shot(page, "11-emulator-approved")
        await page.close()
