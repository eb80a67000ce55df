"""An agent's output with NUL bytes (binary output is legitimate) is kept, NUL shown as U+FFFD, on both
databases: PostgreSQL cannot store U+0000, and the approval used to stay APPROVED without a result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.e2e.harness import Stack, asked, register_agent, story_with_agent
from tests.support.databases import Database
from tests.support.emulator import RunningEmulator

NUL_AGENT = "nul-agent"


@pytest.fixture
async def running(database: Database, tmp_path: Path, emu: RunningEmulator) -> AsyncIterator[Stack]:
    async with story_with_agent(database, tmp_path, emu) as s:
        yield s


@asynccontextmanager
async def agent_answering(story: Stack, token: str, output: str) -> AsyncIterator[None]:
    url = story.server.url.replace("http", "ws", 1) + "/api/agents/ws"

    async def answer_every_directive() -> None:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            async for raw in ws:
                directive = json.loads(raw)
                request_id = directive["request_id"]
                await ws.send(
                    json.dumps({"type": "result", "request_id": request_id, "ok": True, "output": output})
                )

    task = asyncio.create_task(answer_every_directive())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_nul_bytes_in_an_agent_output_are_kept_as_replacement_characters(running: Stack) -> None:
    token = await register_agent(running.api, NUL_AGENT)
    async with agent_answering(running, token, "HOME=/root\x00PATH=/bin\x00"):
        _, _, approval = await asked(running, f"run {NUL_AGENT} cat /proc/self/environ")
        url = f"/api/approvals/{approval['id']}/decision"
        decided = await running.api.post(url, json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        settled = await running.settled(approval["id"])
    assert settled["status"] == "EXECUTED", settled
    assert settled["output"] == "HOME=/root\ufffdPATH=/bin\ufffd"
