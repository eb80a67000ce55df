"""The admin page in a real browser (Debian's Chromium, driven by Playwright) against the real server and the
emulator. Screenshots of each page go to tests/artifacts/screenshots (git-ignored)."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import shot
from tests.conftest import ADMIN_PASS, ADMIN_USER, Server
from tests.e2e.harness import agent_running, register_agent
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator


async def log_in(page: Page, server: Server) -> None:
    await page.goto(server.url + "/")
    await expect(page.locator("#login-form")).to_be_visible()
    await shot(page, "01-login")
    await page.fill("#login-username", ADMIN_USER)
    await page.fill("#login-password", ADMIN_PASS)
    await page.keyboard.press("Enter")  # the keyboard is enough
    await expect(page.locator("#view-connector")).to_be_visible()
    await expect(page.locator("#status-badge")).not_to_have_text("—")  # the form has been filled from the API


async def test_the_whole_admin_story_in_a_browser(
    browser: Browser, server: Server, emu: RunningEmulator
) -> None:
    page = await browser.new_page()
    await log_in(page, server)

    # A failed save shows the error next to its field and keeps what was typed.
    await page.fill("#f-app_id", APP_ID)
    await page.fill("#f-app_secret", APP_SECRET)
    await page.fill("#f-approvers", "ou_alice")
    await page.fill("#f-rate_limit_per_minute", "0")
    await page.click("#save")
    await expect(page.locator('[data-error-for="rate_limit_per_minute"]')).to_contain_text(
        "greater than or equal"
    )
    await expect(page.locator("#f-app_id")).to_have_value(APP_ID)
    await expect(page.locator("#f-app_secret")).to_have_value(APP_SECRET)
    await shot(page, "02-connector-validation-error")

    await page.fill("#f-rate_limit_per_minute", "100")
    await expect(page.locator("#f-callback_enabled")).not_to_be_checked()  # off unless chosen
    await page.check("#f-callback_enabled")
    await page.click("#save")
    await expect(page.locator("#connector-message")).to_have_text("Saved.")
    [saved] = (await server.client.get("/api/integrations/feishu")).json()["items"]
    assert saved["callback_enabled"] is True
    await expect(page.locator('[data-secret="app_secret"] .secret-state')).to_contain_text("set (********")
    await expect(page.locator("#f-app_secret")).to_have_value("")  # write-only: never shown back
    await expect(page.locator("#toggle-enabled")).to_be_disabled()
    await expect(page.locator("#enable-hint")).to_have_text("Verify the credentials before enabling.")

    await page.click("#verify")
    await expect(page.locator("#connector-message")).to_contain_text("Verified")
    await expect(page.locator("#toggle-enabled")).to_be_enabled()
    await page.click("#toggle-enabled")
    await expect(page.locator("#connector-message")).to_have_text("Enabled.")
    await expect(page.locator("#status-badge")).to_have_text("connected", timeout=15_000)
    await expect(page.locator("#status-summary")).to_have_text("connected on 1 of 1 instance")
    await expect(page.locator("#instance-list li")).to_have_count(1)
    await shot(page, "03-connector-enabled")

    # A message through the emulator shows up as ws_routed in the logs (auto-refresh).
    await page.click('a[data-view="logs"]')
    await expect(page.locator("#view-logs")).to_be_visible()
    await emu.control(
        "POST", "/messages", {"chat_id": "oc_ops", "sender": "ou_alice", "text": "help", "mention_bot": True}
    )
    await expect(page.locator("#log-rows tr", has_text="ws_routed").first).to_be_visible(timeout=15_000)
    await page.select_option("#log-action", "verify_callback")
    await expect(page.locator("#log-rows tr")).to_have_count(1)
    await page.select_option("#log-action", "")
    await shot(page, "04-logs")

    # A command asked for in Feishu is approved from the page and runs on the agent.
    token = await register_agent(server.client)
    async with agent_running(server, token):
        await emu.control(
            "POST",
            "/messages",
            {"chat_id": "oc_ops", "sender": "ou_alice", "text": "run demo-agent uptime", "mention_bot": True},
        )
        await page.click('a[data-view="approvals"]')
        pending = page.locator("article.approval", has_text="PENDING")
        await expect(pending).to_be_visible(timeout=15_000)
        await expect(pending).to_contain_text("uptime")
        await shot(page, "05-approval-pending")
        await pending.locator("input").fill("checked with the team")
        await pending.get_by_role("button", name="Approve").click()
        done = page.locator("article.approval", has_text="EXECUTED")
        await expect(done).to_be_visible(timeout=15_000)
        await expect(done).to_contain_text("load average")
        await expect(done).to_contain_text("admin:admin")
        await shot(page, "06-approval-executed")

        # Agents: registered, token shown once, online, revocable.
        await page.click('a[data-view="agents"]')
        await expect(page.locator('tr[data-agent="demo-agent"]')).to_contain_text("online")
        await page.fill("#agent-name", "web-01")
        await page.click("#agent-form button[type=submit]")
        await expect(page.locator("#agent-token-value")).to_contain_text("eca_")
        await page.fill("#agent-name", "web-01")
        await page.click("#agent-form button[type=submit]")
        await expect(page.locator('#agent-form [data-error-for="name"]')).to_contain_text("exists already")
        await shot(page, "07-agents")
        page.on("dialog", lambda dialog: dialog.accept())
        await page.locator('tr[data-agent="web-01"]').get_by_role("button", name="Revoke").click()
        await expect(page.locator('tr[data-agent="web-01"]')).to_contain_text("revoked")

    # Narrow screen and dark mode stay usable.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.click('a[data-view="connector"]')
    await shot(page, "08-connector-phone")
    await page.emulate_media(color_scheme="dark")
    await shot(page, "09-connector-dark")
    await page.close()


async def test_an_expired_session_returns_to_the_login_with_a_message(
    browser: Browser, server: Server
) -> None:
    page = await browser.new_page()
    await log_in(page, server)
    await page.evaluate("sessionStorage.setItem('echocenter.token', 'eyJhbGciOiJIUzI1NiJ9.e30.expired')")
    await page.click('a[data-view="logs"]')
    await expect(page.locator("#login-message")).to_have_text(
        "Your session has expired. Please log in again."
    )
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#app-view")).to_be_hidden()
    await page.close()


async def test_log_out_revokes_the_token_on_the_server(browser: Browser, server: Server) -> None:
    page = await browser.new_page()
    await log_in(page, server)
    token = await page.evaluate("sessionStorage.getItem('echocenter.token')")
    assert (
        await server.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
    await page.click("#logout")
    await expect(page.locator("#login-message")).to_have_text("You are logged out.")
    await expect(page.locator("#login-form")).to_be_visible()
    # A copy of the token (a stolen one, another tab) no longer works either.
    stolen = await server.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert stolen.status_code == 401
    await page.close()
