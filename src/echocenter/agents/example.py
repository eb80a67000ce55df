"""``echocenter agent run``: a small example agent that runs an allow-list of harmless commands.

Anything not on the list is refused; commands run without a shell, with a timeout. Enough for a real demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

DEFAULT_ALLOWED = ("uptime", "df -h", "whoami", "date", "hostname", "free -m")
OUTPUT_LIMIT = 16_000


async def run_command(command: str, allowed: frozenset[str], timeout: float) -> tuple[bool, str]:
    normalized = " ".join(command.split())
    if normalized not in allowed:
        return (
            False,
            f"refused: {normalized!r} is not on this agent's allow-list ({', '.join(sorted(allowed))})",
        )
    try:
        process = await asyncio.create_subprocess_exec(
            *shlex.split(normalized),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        return False, f"cannot start {normalized!r}: {exc.strerror}"
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return False, f"{normalized!r} took longer than {timeout:g} s"
    text = output.decode(errors="replace")[-OUTPUT_LIMIT:]
    return process.returncode == 0, text


async def run_agent(
    url: str,
    token: str,
    *,
    allowed: frozenset[str],
    timeout: float = 30.0,
    heartbeat: float = 10.0,
    once: bool = False,
    declare: bool = True,
) -> None:
    """Connect and serve directives; reconnect when the connection drops (unless ``once``).

    With ``declare`` the agent reports its allow-list first (a ``hello``), so the service refuses other
    commands before anyone is asked to approve them."""
    delay = 1.0
    while True:
        try:
            async with connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
            ) as ws:
                delay = 1.0
                log_event(log, "agent_connected", url=url)
                if declare:
                    await ws.send(json.dumps({"type": "hello", "commands": sorted(allowed)}))

                async def beat() -> None:
                    while True:
                        await ws.send(json.dumps({"type": "heartbeat"}))
                        await asyncio.sleep(heartbeat)

                beater = asyncio.create_task(beat())
                try:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") != "directive":
                            continue
                        ok, output = await run_command(str(message.get("command", "")), allowed, timeout)
                        await ws.send(
                            json.dumps(
                                {
                                    "type": "result",
                                    "request_id": message.get("request_id"),
                                    "ok": ok,
                                    "output": output,
                                }
                            )
                        )
                finally:
                    beater.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beater
        except InvalidStatus as exc:
            log_event(log, "agent_refused", level=logging.ERROR, status=exc.response.status_code)
            if once:
                raise
        except (OSError, WebSocketException) as exc:
            log_event(log, "agent_disconnected", level=logging.WARNING, error=type(exc).__name__)
        if once:
            return
        await asyncio.sleep(delay)
        delay = min(30.0, delay * 2)
