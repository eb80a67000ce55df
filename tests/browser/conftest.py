"""Browser fixtures: Debian's Chromium driven by Playwright, and EchoCenter beside the emulator."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import Server
from tests.e2e.harness import e2e_settings, serve_echocenter
from tests.support.databases import fresh_database
from tests.support.emulator import RunningEmulator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parent.parent / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def server(tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Server]:
    """SQLite only: the storage rules run on both databases elsewhere; the page needs one."""
    async with fresh_database("sqlite", tmp_path) as database:
        settings = e2e_settings(database, tmp_path, emu.url, approval_sweep_seconds=0.5)
        async with serve_echocenter(settings, None) as running:
            yield running


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # No silent pass without a browser: .ci/run installs Debian's chromium, so a missing one is an error here.
    if not Path(CHROMIUM).exists():
        raise pytest.UsageError(f"Debian's chromium is required for the browser tests ({CHROMIUM} not found)")
