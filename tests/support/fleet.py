"""EchoCenter as real processes (``echocenter serve``) around one database and the emulator, messages
flowing at a set rate, kill -9 mid-flow, and the tally the emulator keeps: sent, acked, answered (replies
per message), answered twice, lost. The e2e durability tests and ``benchmarks/chaos.py`` share it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from echocenter.db.engine import make_engine
from echocenter.db.models import UNFINISHED, InboundMessage
from echocenter.emulator import EmulatorConfig
from tests.support.emulator import APP_ID, APP_SECRET, RunningEmulator
from tests.support.waiting import eventually

ADMIN = ("admin", "admin-password-1")
COMMAND_AGENT = "chaos-agent"
SENDERS = ("ou_alice", "ou_bob")


def patient_feishu(*, ack_timeout_seconds: float) -> EmulatorConfig:
    """Feishu pushing again what is not acked, for long enough to outlast a restart or an outage (it retries
    for hours). Send quotas off (and the service's pacing, in service_env): the flows flood one chat at up
    to 100 messages/s to kill a process mid-flow; within Feishu's 5 replies/s per chat the answers would
    take minutes. Pacing under the quotas has its own tests (test_outbox.py) and benchmark."""
    return EmulatorConfig(
        ack_timeout_seconds=ack_timeout_seconds, max_delivery_attempts=60, quotas_enabled=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(
    *, database_url: str, schema: str, emulator_url: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    """What every instance shares: the database, the secrets, the emulator; short leases and sweeps so a
    killed instance's messages are taken up again within seconds."""
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SECRETS_KEY": Fernet.generate_key().decode(),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "DATABASE_SCHEMA": schema,
        "INITIAL_ADMIN_USER": ADMIN[0],
        "INITIAL_ADMIN_PASS": ADMIN[1],
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "FEISHU_BASE_URL": emulator_url,
        "FEISHU_WS_ENABLED": "true",
        "FEISHU_WS_BACKOFF_CAP": "0.5",
        "FEISHU_HTTP_TIMEOUT": "3",
        "INBOX_LEASE_SECONDS": "3",
        "INBOX_SWEEP_SECONDS": "0.5",
        "INBOX_RETRY_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        "FEISHU_SEND_QPS_PER_APP": "0",  # the durability runs flood one chat: pacing is tested elsewhere
        "FEISHU_SEND_QPS_PER_CHAT": "0",
        **extra,
    }


@dataclass
class Service:
    """One ``echocenter serve`` process."""

    process: asyncio.subprocess.Process
    url: str

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.kill()
                await self.process.wait()


async def start_service(env: dict[str, str], log_path: Path, *, timeout: float = 60) -> Service:
    port = free_port()
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "echocenter", "serve", "--port", str(port),
            env=env, cwd=str(log_path.parent), stdout=log_file, stderr=log_file,
        )  # fmt: skip
    service = Service(process, f"http://127.0.0.1:{port}")
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the service exited ({process.returncode}); see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(service.url + "/api/health")).status_code == 200:
                    return service
            if asyncio.get_running_loop().time() > deadline:
                service.kill()
                raise RuntimeError(f"the service did not come up; see {log_path}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def admin_client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        login = await client.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield client


async def create_connector(service: Service) -> int:
    """The emulator's default app as an enabled connector that answers everyone (no prefix, high limit)."""
    async with admin_client(service) as api:
        body = {"app_id": APP_ID, "app_secret": APP_SECRET, "prefix_command": "", "approvers": ["ou_alice"]}
        created = await api.post("/api/integrations/feishu", json={**body, "rate_limit_per_minute": 10_000})
        created.raise_for_status()
        connector_id: int = created.json()["id"]
        (await api.post(f"/api/integrations/feishu/{connector_id}/verify-callback")).raise_for_status()
        enabled = await api.patch(f"/api/integrations/feishu/{connector_id}/enable", json={"enabled": True})
        enabled.raise_for_status()
        return connector_id


async def wait_for(probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    """``eventually``, with what was awaited named in the failure."""
    try:
        return await eventually(probe, timeout=timeout, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


async def connections(emu: RunningEmulator) -> int:
    return len((await emu.control("GET", "/connections"))["items"])


@dataclass
class Tally:
    """What the emulator saw, per message the users sent."""

    sent: dict[str, str] = field(default_factory=dict)  # message_id → event_id
    acked_before_kill: set[str] = field(default_factory=set)
    answered_before_kill: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    replies: Counter[str] = field(default_factory=Counter)  # text replies per message
    cards: Counter[str] = field(default_factory=Counter)  # approval cards per message
    reply_requests: int = 0  # reply calls the emulator took, repeats (same uuid) included

    def read(self, emu: RunningEmulator) -> None:
        by_event = {d.event_id: d for d in emu.emulator.hub.deliveries.values()}
        self.acked = {m for m, e in self.sent.items() if e in by_event and by_event[e].acked.is_set()}
        bot = [
            m
            for m in list(emu.world.messages.values())
            if m.sender_type == "app" and m.parent_id in self.sent
        ]
        self.replies = Counter(m.parent_id for m in bot if m.msg_type == "text")
        self.cards = Counter(m.parent_id for m in bot if m.msg_type == "interactive")
        counters = emu.world.counters
        self.reply_requests = sum(
            n for k, n in counters.items() if k.startswith("POST") and k.endswith("/reply")
        )

    def mark_kill(self, emu: RunningEmulator) -> None:
        """What stood where the moment an instance died."""
        self.read(emu)
        self.acked_before_kill, self.answered_before_kill = set(self.acked), set(self.answered)

    @property
    def answered(self) -> set[str]:
        return {m for m in self.sent if self.replies[m] >= 1}

    @property
    def answered_twice(self) -> set[str]:
        return {m for m in self.sent if self.replies[m] > 1}

    @property
    def lost(self) -> set[str]:
        """Acked (so Feishu will not push it again) and never answered."""
        return self.acked - self.answered

    def figures(self) -> dict[str, int]:
        return {
            "sent": len(self.sent),
            "acked before the kill": len(self.acked_before_kill),
            # the ones a crash used to lose: acked, so Feishu will not push them again, and not yet answered
            "unanswered at the kill": len(self.acked_before_kill - self.answered_before_kill),
            "acked": len(self.acked),
            "answered": len(self.answered),
            "answered twice": len(self.answered_twice),
            "asked for approval twice": sum(1 for n in self.cards.values() if n > 1),
            "reply requests": self.reply_requests,
            "lost": len(self.lost),
        }


async def flow(
    emu: RunningEmulator,
    tally: Tally,
    *,
    count: int,
    rate: float,
    at: int | None = None,
    event: Callable[[], Awaitable[None]] | None = None,
    commands_every: int = 0,
) -> None:
    """Users send ``count`` messages at ``rate``/s (mentioning the bot in a group); after ``at`` of them
    ``event`` runs (a kill, an outage) while the flow goes on. Every ``commands_every``-th message asks to
    run a command on ``COMMAND_AGENT`` (approvers: ou_alice)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sends: list[asyncio.Task[None]] = []

    async def send(i: int) -> None:
        sender = SENDERS[i % len(SENDERS)]
        text = "status"
        if commands_every and i % commands_every == 0:
            sender, text = "ou_alice", f"run {COMMAND_AGENT} date"
        body = {"chat_id": "oc_ops", "sender": sender, "text": text, "mention_bot": True}
        sent = await emu.control("POST", "/messages", body)
        tally.sent[sent["message_id"]] = sent["event_id"]

    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        if i == at and event is not None:
            await event()
        sends.append(asyncio.create_task(send(i)))
    await asyncio.gather(*sends)


async def unfinished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(InboundMessage).where(InboundMessage.status.in_(UNFINISHED))
        return int((await conn.execute(query)).scalar_one())


async def settle(emu: RunningEmulator, tally: Tally, engine: AsyncEngine, *, timeout: float = 60) -> None:
    """Wait until every message sent is answered and the inbox holds nothing unfinished (so no later
    re-drive can still add a second answer); then read the final tally."""

    async def done() -> bool:
        tally.read(emu)
        return len(tally.answered) == len(tally.sent) and await unfinished(engine) == 0

    with contextlib.suppress(AssertionError):
        await wait_for(done, timeout=timeout, what="every message answered")
    tally.read(emu)


@asynccontextmanager
async def database_engine(url: str, schema: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url, schema=schema)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def services() -> AsyncIterator[list[Service]]:
    """Every process started inside is stopped on the way out, whatever happened."""
    started: list[Service] = []
    try:
        yield started
    finally:
        await asyncio.gather(*(s.stop() for s in started), return_exceptions=True)


@dataclass
class CountingAgent:
    """An agent that runs nothing: it counts the directives it gets per request and reports success, so
    "executed twice" is seen where it would happen — at the agent."""

    runs: Counter[str] = field(default_factory=Counter)

    async def serve(self, service: Service, token: str) -> None:
        url = service.url.replace("http", "ws", 1) + "/api/agents/ws"
        while True:
            with contextlib.suppress(OSError, websockets.WebSocketException):
                async with websockets.connect(
                    url, additional_headers={"Authorization": f"Bearer {token}"}
                ) as ws:
                    await ws.send(json.dumps({"type": "heartbeat"}))
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "directive":
                            self.runs[str(message.get("request_id"))] += 1
                            result = {"type": "result", "request_id": message.get("request_id"), "ok": True}
                            await ws.send(json.dumps({**result, "output": "done"}))
            await asyncio.sleep(0.2)


async def register_agent(service: Service) -> str:
    async with admin_client(service) as api:
        created = await api.post("/api/agents", json={"name": COMMAND_AGENT})
        created.raise_for_status()
        token: str = created.json()["token"]
        return token


async def approve_every_card(service: Service, emu: RunningEmulator) -> list[dict[str, Any]]:
    """Click Approve (as ou_alice, an approver) on every pending card; return once all have run."""
    async with admin_client(service) as api:

        async def approvals() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await api.get("/api/approvals")).json()
            return items

        for approval in await approvals():
            if approval["status"] == "PENDING" and approval["card_message_id"]:
                value = {"approval_id": approval["id"], "decision": "approve"}
                click = {"message_id": approval["card_message_id"], "operator": "ou_alice", "value": value}
                await emu.control("POST", "/cards/click", click)

        async def all_run() -> list[dict[str, Any]]:
            items = await approvals()
            return items if all(a["status"] in ("EXECUTED", "FAILED") for a in items) else []

        result: list[dict[str, Any]] = await wait_for(all_run, timeout=60, what="every command run")
        return result
