"""`echocenter demo`, run as a person would: write in the emulator's chat, click Approve, see the output."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx

from tests.support.waiting import eventually


async def test_the_demo_runs_the_whole_story(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echocenter",
        "demo",
        "--port",
        "0",
        "--emulator-port",
        "0",
        "--data-dir",
        str(tmp_path / "demo"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, f"the demo ended early: {banner}"
            banner += line.decode()
        chat_url = re.search(r"Chat \(Feishu emulator\): (http://\S+)/", banner)
        assert chat_url, banner
        async with httpx.AsyncClient(base_url=chat_url.group(1), timeout=10) as emu:
            assert "Feishu emulator" in (await emu.get("/")).text
            sent = (
                await emu.post(
                    "/control/messages",
                    json={
                        "chat_id": "oc_ops",
                        "sender": "ou_alice",
                        "text": "run demo-agent uptime",
                        "mention_bot": True,
                    },
                )
            ).json()

            async def card() -> dict[str, object] | None:
                items = (await emu.get("/control/chats/oc_ops/messages")).json()["items"]
                return next(
                    (
                        m
                        for m in items
                        if m["msg_type"] == "interactive" and m["parent_id"] == sent["message_id"]
                    ),
                    None,
                )

            found = await eventually(card, timeout=20)
            click = (
                await emu.post(
                    "/control/cards/click",
                    json={"message_id": found["message_id"], "operator": "ou_alice", "button": "Approve"},
                )
            ).json()
            assert click["status"] == "answered"

            async def output() -> str | None:
                items = (await emu.get("/control/chats/oc_ops/messages")).json()["items"]
                texts = [m["content"].get("text", "") for m in items if m["msg_type"] == "text"]
                return next((t for t in texts if t.startswith("✅")), None)

            assert "load average" in await eventually(output, timeout=20)
    finally:
        process.terminate()
        await process.wait()
