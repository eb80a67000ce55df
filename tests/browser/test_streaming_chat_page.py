"""The emulator's chat page shows a streamed answer growing word by word, then settling (issue 14)."""

from __future__ import annotations

import base64
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.e2e.harness import create_verified_connector, e2e_settings, serve_echocenter
from tests.e2e.test_streaming import PNG
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


async def test_the_chat_page_shows_threads_images_and_reactions(
    browser: Browser, emu: RunningEmulator
) -> None:
    """Without a Butler: the page draws what the emulator holds (a thread reply, an image, a reaction)."""
    root = await emu.control(
        "POST", "/messages", {"chat_id": "oc_ops", "sender": "ou_alice", "text": "topic"}
    )
    await emu.control(
        "POST",
        "/messages",
        {"chat_id": "oc_ops", "sender": "ou_bob", "text": "in the thread", "thread_of": root["message_id"]},
    )
    png = base64.b64encode(PNG).decode()
    image = {"chat_id": "oc_ops", "sender": "ou_alice", "message_type": "image", "resource_base64": png}
    await emu.control("POST", "/messages", {**image, "resource_content_type": "image/png"})
    token = await emu.token()
    reacted = await emu.http.post(
        f"/open-apis/im/v1/messages/{root['message_id']}/reactions",
        json={"reaction_type": {"emoji_type": "OnIt"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reacted.json()["code"] == 0
    page = await browser.new_page()
    await page.goto(emu.url + "/")
    await page.select_option("#chat", "oc_ops")
    await expect(page.locator(".msg.in-thread", has_text="in the thread")).to_be_visible()
    await expect(page.locator(f'[data-message-id="{root["message_id"]}"] .reactions')).to_contain_text("OnIt")
    picture = page.locator(".msg img").last
    await expect(picture).to_be_visible()
    assert await picture.evaluate("img => img.naturalWidth") == 1  # the one-pixel PNG really loaded
    await shot(page, "22-emulator-thread-image-reaction")
    await page.close()
