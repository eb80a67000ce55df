"""The connection to EchoCenter: hello (the declared commands), heartbeats, directives in, results out,
matched by request_id. Reconnects with jittered exponential backoff; stops for good (``Fatal``) when retrying
cannot help — a refused token, no agent endpoint at that URL, an untrusted TLS certificate.

Protocol (the service's ``/api/agents/ws``): ``Authorization: Bearer <token>`` on the upgrade; the agent sends
``{"type": "hello", "commands": [...]}`` and ``{"type": "heartbeat"}``; the service sends
``{"type": "directive", "request_id", "command", "reason"}``, answered by
``{"type": "result", "request_id", "ok", "output"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from echocenter_agent import __version__
from echocenter_agent.config import AgentConfig
from echocenter_agent.runner import Outcome, run_argv
from echocenter_agent.templates import Refused, match

__all__ = ["Fatal", "backoff", "classify", "handle_directive", "serve"]

log = logging.getLogger("echocenter_agent")


class Fatal(Exception):
    """Retrying cannot help; the message tells the operator what to fix."""


def backoff(initial: float = 1.0, factor: float = 2.0, cap: float = 60.0) -> Iterator[float]:
    """Delays between attempts: a random first one (so a fleet does not reconnect in step), then doubling
    up to ``cap``. Start a new generator after a successful connection."""
    yield random.uniform(0, initial)
    delay = initial
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(cap, delay * factor)


def classify(exc: BaseException, url: str) -> Fatal | None:
    """A Fatal when this failure will not go away by itself, else None (retry)."""
    if isinstance(exc, InvalidURI):
        return Fatal(f"the service URL {url!r} is not a valid WebSocket URL")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Fatal(f"the TLS certificate of {url} is not trusted: {exc.verify_message}")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return Fatal("the service refused the agent token (unknown or revoked): issue a new one")
        if status == 404:
            return Fatal(f"no agent endpoint at {url} (HTTP 404): check the url")
    return None


def _result(request_id: str, outcome: Outcome) -> str:
    result = {"type": "result", "request_id": request_id, "ok": outcome.ok, "output": outcome.output}
    return json.dumps(result)


async def handle_directive(config: AgentConfig, message: dict[str, Any]) -> Outcome:
    """Run the directive when it fits one of the configured commands; refuse it otherwise."""
    command = message.get("command")
    if not isinstance(command, str):
        return Outcome(False, "refused: the directive has no command")
    try:
        template, argv = match(command, config.commands)
    except Refused as exc:
        log.warning("refused %r", command[:200])
        return Outcome(False, str(exc))
    log.info("running %s (request %s)", argv, message.get("request_id"))
    return await run_argv(argv, timeout=template.timeout, max_output_bytes=template.max_output_bytes)


async def _session(ws: ClientConnection, config: AgentConfig) -> None:
    hello = {"type": "hello", "commands": config.declared(), "name": config.name, "version": __version__}
    await ws.send(json.dumps(hello))
    limit = asyncio.Semaphore(config.max_parallel)
    running: set[asyncio.Task[None]] = set()

    async def beat() -> None:
        while True:
            await asyncio.sleep(config.heartbeat_seconds)
            await ws.send(json.dumps({"type": "heartbeat"}))

    async def work(request_id: str, message: dict[str, Any]) -> None:
        async with limit:
            outcome = await handle_directive(config, message)
        try:
            await ws.send(_result(request_id, outcome))
        except ConnectionClosed:  # the service times the request out and marks it failed
            log.warning("the connection closed before the result of %s could be sent", request_id)

    beater = asyncio.create_task(beat())
    try:
        async for raw in ws:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict) or message.get("type") != "directive":
                continue
            request_id = message.get("request_id")
            if not isinstance(request_id, str):
                continue
            task = asyncio.create_task(work(request_id, message))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in (beater, *running):
            task.cancel()
        await asyncio.gather(beater, *running, return_exceptions=True)


async def serve(config: AgentConfig, *, backoff_cap: float = 60.0, once: bool = False) -> None:
    """Stay connected until cancelled; raise Fatal when retrying cannot help."""
    delays = backoff(cap=backoff_cap)
    while True:
        try:
            async with connect(
                config.url,
                additional_headers={"Authorization": f"Bearer {config.token}"},
                user_agent_header=f"echocenter-agent/{__version__}",
                proxy=None,  # a direct connection; TLS is verified with the default context for wss://
            ) as ws:
                log.info("connected to %s; %d command(s) declared", config.url, len(config.commands))
                delays = backoff(cap=backoff_cap)
                await _session(ws, config)
        except (OSError, WebSocketException, TimeoutError) as exc:
            fatal = classify(exc, config.url)
            if fatal is not None:
                raise fatal from exc
            log.warning("connection to %s lost or refused: %s", config.url, exc)
        if once:
            return
        delay = next(delays)
        log.info("reconnecting in %.1f s", delay)
        await asyncio.sleep(delay)
