"""``echocenter agent run``: a small example agent that runs an allow-list of harmless commands.

Anything not on the list is refused; commands run without a shell, with a timeout. Enough for a real demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from echocenter.errors import EchoCenterError
from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

DEFAULT_ALLOWED = ("uptime", "df -h", "whoami", "date", "hostname", "free -m")
OUTPUT_LIMIT = 16_000
AGENT_PATH = "/api/agents/ws"
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class AgentStop(EchoCenterError):
    """What retrying cannot fix (a malformed URL, a refused token): the agent stops and says why."""


def agent_url(url: str) -> str:
    """The agent socket's URL from the service's base URL (http(s)://host:port[/prefix]) or a ws(s) URL."""
    expected = "expected http(s)://HOST:PORT or ws(s)://HOST:PORT/api/agents/ws"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise AgentStop(f"malformed URL {url!r}: {exc} ({expected})") from exc
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise AgentStop(f"malformed URL {url!r} ({expected})")
    path = parts.path.rstrip("/")
    if not path.endswith(AGENT_PATH):
        path += AGENT_PATH  # a base URL, maybe with a prefix (behind a proxy)
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


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
    commands before anyone is asked to approve them. Raises AgentStop for a malformed URL or a refused token:
    retrying those would never succeed.
    """
    url = agent_url(url)
    delay = 1.0
    while True:
        try:
            async with connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
            ) as ws:
                delay = 1.0
                log_event(log, "agent_connected", url=url)
                await _serve(ws, allowed=allowed, timeout=timeout, heartbeat=heartbeat, declare=declare)
        except InvalidStatus as exc:
            status = exc.response.status_code
            log_event(log, "agent_refused", level=logging.ERROR, status=status)
            if 400 <= status < 500:
                raise AgentStop(
                    f"the service refused this agent (HTTP {status}): the token is unknown or revoked, "
                    f"or {url} is not EchoCenter's agent socket"
                ) from exc
            if once:
                raise
        except InvalidURI as exc:
            raise AgentStop(f"malformed URL {url!r}: {exc}") from exc
        except (OSError, WebSocketException) as exc:
            log_event(log, "agent_disconnected", level=logging.WARNING, error=type(exc).__name__)
        if once:
            return
        await asyncio.sleep(delay)
        delay = min(30.0, delay * 2)


async def _serve(
    ws: ClientConnection, *, allowed: frozenset[str], timeout: float, heartbeat: float, declare: bool
) -> None:
    """One connection: say hello, beat, and answer each directive until the connection ends."""
    if declare:
        await ws.send(json.dumps({"type": "hello", "commands": sorted(allowed)}))
    beater = asyncio.create_task(_beat(ws, heartbeat))
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "directive":
                continue
            ok, output = await run_command(str(message.get("command", "")), allowed, timeout)
            await ws.send(
                json.dumps(
                    {"type": "result", "request_id": message.get("request_id"), "ok": ok, "output": output}
                )
            )
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater


async def _beat(ws: ClientConnection, every: float) -> None:
    while True:
        await ws.send(json.dumps({"type": "heartbeat"}))
        await asyncio.sleep(every)
