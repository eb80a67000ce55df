"""The emulator's chat page shows a streamed answer growing word by word, then settling (issue 14)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.e2e.conftest import create_verified_connector, e2e_settings, serve_echocenter
from tests.support.databases import fresh_database
from tests.support.emulator import RunningEmulator
from tests.support.fake_openai import FakeOpenAI, text_answer
from tests.support.live import serve

STORY = " ".join(f"step{i}" for i in range(30)) + " finished."


async def test_a_streamed_reply_grows_on_the_chat_page(
    browser: Browser, tmp_path: Path, emu: RunningEmulator
) -> None:
    fake = FakeOpenAI(token_delay=0.1, answers=[text_answer(STORY)])  # about 3 s of writing
    async with (
        serve(fake.app(), lifespan="off") as llm_url,
        fresh_database("sqlite", tmp_path) as database,
    ):
        settings = e2e_settings(
            database,
            tmp_path,
            emu.url,
            butler_base_url=llm_url + "/v1",
            butler_api_token="sk-test",
            butler_model="fake-model",
        )
        async with serve_echocenter(settings, None) as server:
            await create_verified_connector(server, approvers=["ou_alice"])
            page = await browser.new_page()
            await page.goto(emu.url + "/")
            await page.select_option("#user", "ou_alice")
            await page.select_option("#chat", "oc_ops")
            await page.fill("#text", "tell me the steps")
            await page.keyboard.press("Enter")
            card = page.locator(".msg.card").last
            await expect(card).to_have_class("msg card streaming", timeout=15_000)  # still being written
            partial = await card.inner_text()
            assert "step0" in partial and "finished." not in partial
            await shot(page, "20-emulator-streaming")
            await expect(card).to_contain_text("finished.", timeout=15_000)
            await expect(card).not_to_have_class("msg card streaming")
            await shot(page, "21-emulator-streamed")
            await page.close()
