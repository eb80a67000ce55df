"""`echocenter agent run` as people run it: a base URL is enough; a bad URL or a refused token stops it."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.conftest import Server
from tests.support.waiting import eventually

CLI_DEADLINE = 30.0


async def _start_agent(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echocenter",
        "agent",
        "run",
        *args,
        env={**os.environ, "ECHOCENTER_AGENT_TOKEN": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def _agent_run(*args: str) -> tuple[int, str]:
    process = await _start_agent(*args)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), CLI_DEADLINE)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the agent kept retrying instead of stopping") from None
    return process.returncode or 0, out.decode()


async def test_a_malformed_url_stops_the_agent_with_a_message() -> None:
    code, out = await _agent_run("--url", "http://[::1", "--token", "eca_whatever")
    assert code == 1
    assert "malformed URL" in out


async def test_a_refused_token_stops_the_agent_with_a_message(server: Server) -> None:
    code, out = await _agent_run("--url", server.url, "--token", "eca_not-a-real-token")
    assert code == 1
    assert "refused this agent (HTTP 403)" in out


async def test_the_service_base_url_is_enough_to_connect(server: Server) -> None:
    created = await server.client.post("/api/agents", json={"name": "base-url-agent"})
    token = created.json()["token"]
    process = await _start_agent("--url", server.url, "--token", token)  # server.url: http://127.0.0.1:PORT
    try:

        async def online() -> bool:
            agents = (await server.client.get("/api/agents")).json()["items"]
            return any(a["name"] == "base-url-agent" and a["online"] for a in agents)

        await eventually(online, timeout=20)
    finally:
        process.kill()
        await process.communicate()
