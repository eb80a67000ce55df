"""The connector page's Diagnose button and the agents page's command lists, in a real browser."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.browser.test_admin_page import log_in
from tests.conftest import Server
from tests.e2e.harness import create_verified_connector
from tests.support.emulator import APP_ID, RunningEmulator


async def test_diagnose_shows_each_check_and_the_fix(
    browser: Browser, server: Server, emu: RunningEmulator
) -> None:
    await create_verified_connector(server)
    await emu.control(
        "PATCH", f"/apps/{APP_ID}", {"missing_scopes": ["im:message", "im:message:send_as_bot"]}
    )
    page = await browser.new_page()
    await log_in(page, server)
    await page.fill("#doctor-chat", "oc_ops")
    await page.click("#doctor")
    failed = page.locator('#doctor-results li[data-check="test_message"]')
    await expect(failed).to_contain_text("99991672")
    await expect(failed).to_contain_text("Fix: The app lacks a permission")
    await expect(page.locator('#doctor-results li[data-check="credentials"]')).to_contain_text("✓")
    await expect(page.locator("#connector-message")).to_have_text("Some checks failed: see below.")
    await shot(page, "10-connector-doctor")
    await page.close()


async def test_agent_commands_are_set_at_registration_and_edited(browser: Browser, server: Server) -> None:
    page = await browser.new_page()
    await log_in(page, server)
    await page.click('a[data-view="agents"]')
    await page.fill("#agent-name", "web-02")
    await page.fill("#agent-commands", "uptime\nsystemctl restart {unit}")
    await page.click("#agent-form button[type=submit]")
    row = page.locator('tr[data-agent="web-02"]')
    await expect(row).to_contain_text("uptime; systemctl restart {unit} (set here)")
    await row.get_by_role("button", name="Edit").click()
    await row.locator("textarea").fill("date\necho {")
    await row.get_by_role("button", name="Save").click()
    await expect(row.locator(".field-error")).to_contain_text("brace")
    await row.locator("textarea").fill("")
    await row.get_by_role("button", name="Save").click()
    await expect(page.locator('tr[data-agent="web-02"]')).to_contain_text("any command")
    await shot(page, "11-agent-commands")
    await page.close()
