"""/docs in a real browser: Swagger UI renders from our own assets under the page policy, with no request to
another origin and no policy violation; and no page of ours can be framed."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import shot
from tests.conftest import Server
from tests.support.waiting import eventually


async def test_swagger_ui_renders_from_local_assets_under_the_policy(
    browser: Browser, server: Server
) -> None:
    page = await browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    await page.goto(server.url + "/docs")
    await expect(page.locator("#swagger-ui")).to_contain_text("/api/auth/login", timeout=15_000)
    await expect(page.locator("#swagger-ui")).to_contain_text("EchoCenter")
    await shot(page, "docs")

    assert requested and all(url.startswith(server.url + "/") for url in requested), requested
    assert not problems, problems  # a Content-Security-Policy refusal is reported as a console error


async def test_no_page_of_ours_can_be_framed(browser: Browser, server: Server) -> None:
    page = await browser.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame" in m.text.lower() else None)
    # A hostile page (here: an about:blank document) embeds ours.
    await page.set_content(
        f'<iframe id="app" src="{server.url}/"></iframe><iframe id="docs" src="{server.url}/docs"></iframe>'
    )

    async def both_refused() -> bool:
        return len([m for m in refused if "frame-ancestors" in m or "X-Frame-Options" in m]) >= 2

    await eventually(both_refused)
    for frame in page.frames[1:]:
        assert await frame.locator("#login-form, #swagger-ui").count() == 0
