"""The agents page pages through many agents and filters them by name prefix, in a real browser."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.test_admin_page import log_in
from tests.conftest import Server

PAGE = 50  # the page's page size (web/app.js AGENT_PAGE)


async def test_the_agents_page_pages_and_filters(browser: Browser, server: Server) -> None:
    names = [f"node-{i:03d}" for i in range(PAGE + 5)] + ["web-01"]
    for name in names:
        assert (await server.client.post("/api/agents", json={"name": name})).status_code == 201
    page = await browser.new_page()
    await log_in(page, server)
    await page.click('a[data-view="agents"]')
    rows = page.locator("#agent-rows tr")
    await expect(rows).to_have_count(PAGE)
    await expect(page.locator("#agent-counts")).to_have_text(f"0 of {len(names)} online")
    await expect(rows.first).to_have_attribute("data-agent", "node-000")
    await expect(page.locator("#agent-prev")).to_be_hidden()

    await page.click("#agent-next")
    await expect(rows).to_have_count(len(names) - PAGE)
    await expect(rows.first).to_have_attribute("data-agent", f"node-{PAGE:03d}")
    await expect(rows.last).to_have_attribute("data-agent", "web-01")
    await expect(page.locator("#agent-next")).to_be_hidden()
    await page.click("#agent-prev")
    await expect(rows.first).to_have_attribute("data-agent", "node-000")

    await page.fill("#agent-q", "WEB")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-agent", "web-01")
    await expect(page.locator("#agent-counts")).to_have_text("0 of 1 online")
    await page.select_option("#agent-online", "true")
    await expect(rows).to_have_count(0)
    await page.close()
