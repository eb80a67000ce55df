"""The e2e fixtures, both on the one harness (tests/e2e/harness.py): ``stack`` with a recording Butler,
``story`` with the real Butler and a real agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Stack,
    create_verified_connector,
    e2e_settings,
    serve_echocenter,
    story_with_agent,
)
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator
from tests.support.recording_butler import RecordingButler


@pytest.fixture
async def stack(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    butler = RecordingButler()
    async with serve_echocenter(e2e_settings(database, tmp_path, emu.url), butler) as server:
        connector_id = await create_verified_connector(server, prefix_command="", rate_limit_per_minute=100)
        stack = Stack(server, emu, connector_id, butler)
        await stack.wait_connected()
        yield stack


@pytest.fixture
async def story(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    async with story_with_agent(database, tmp_path, emu) as s:
        yield s
