"""``echocenter demo``: the emulator, the service and the example agent in one process, wired together.

Open the emulator's chat page, write ``run demo-agent uptime``, click Approve, see the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from pathlib import Path

import httpx
import uvicorn

from echocenter.agents.example import DEFAULT_ALLOWED, run_agent
from echocenter.app import create_app
from echocenter.emulator import create_emulator_app
from echocenter.emulator.state import World
from echocenter.filemodes import make_private, make_private_dir, write_private
from echocenter.settings import Environment, Settings

DEMO_AGENT = "demo-agent"
DEMO_ADMIN = "demo"


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def _serve(app: object, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


async def _configure(api: httpx.AsyncClient, password: str) -> str:
    """Log in, register the agent, create a verified and enabled connector. Returns the agent's token."""
    login = await api.post("/api/auth/login", json={"username": DEMO_ADMIN, "password": password})
    login.raise_for_status()
    api.headers["Authorization"] = f"Bearer {login.json()['token']}"
    existing = {
        a["name"]: a for a in (await api.get("/api/agents", params={"q": DEMO_AGENT})).json()["items"]
    }
    if DEMO_AGENT in existing:  # a second run on the same data: a fresh token for the same agent
        agent = await api.post(f"/api/agents/{existing[DEMO_AGENT]['id']}/token")
    else:
        agent = await api.post("/api/agents", json={"name": DEMO_AGENT})
    agent.raise_for_status()
    connectors = (await api.get("/api/integrations/feishu")).json()["items"]
    if connectors:
        connector_id = connectors[0]["id"]
    else:
        created = await api.post(
            "/api/integrations/feishu",
            json={
                "connector_name": "Demo (emulator)",
                "app_id": World.DEFAULT_APP_ID,
                "app_secret": World.DEFAULT_APP_SECRET,
                "approvers": ["ou_alice", "ou_bob"],
                "mention_required": True,
                # The demo is one person at a keyboard who asks and approves: four-eyes is off here only.
                "allow_self_approval": True,
            },
        )
        created.raise_for_status()
        connector_id = created.json()["id"]
    verified = (await api.post(f"/api/integrations/feishu/{connector_id}/verify-callback")).json()
    if not verified["ok"]:
        raise RuntimeError(f"verification against the emulator failed: {verified['message']}")
    (
        await api.patch(f"/api/integrations/feishu/{connector_id}/enable", json={"enabled": True})
    ).raise_for_status()
    token: str = agent.json()["token"]
    return token


def _demo_password(data_dir: Path) -> tuple[Path, str]:
    """The demo admin's password, kept in a file only the owner can read (stable across runs)."""
    password_file = data_dir / "demo-admin-password"
    make_private_dir(data_dir)
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(12))
    make_private(password_file)
    return password_file, password_file.read_text().strip()


async def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    emulator_port: int = 9000,
    data_dir: Path = Path("data/demo"),
) -> None:
    emulator_sock, service_sock = _bound(host, emulator_port), _bound(host, port)
    emulator_url = f"http://{host}:{emulator_sock.getsockname()[1]}"
    service_url = f"http://{host}:{service_sock.getsockname()[1]}"
    password_file, password = _demo_password(data_dir)
    settings = Settings(
        environment=Environment.DEVELOPMENT,
        data_dir=data_dir,
        feishu_base_url=emulator_url,
        feishu_ws_enabled=True,
        initial_admin_user=DEMO_ADMIN,
        initial_admin_pass=password,
        approval_ttl=600,
    )
    servers = []
    agent_task: asyncio.Task[None] | None = None
    try:
        servers.append(await _serve(create_emulator_app(), emulator_sock))
        servers.append(await _serve(create_app(settings), service_sock))
        async with httpx.AsyncClient(base_url=service_url, timeout=30) as api:
            token = await _configure(api, password)
        ws_url = service_url.replace("http", "ws", 1) + "/api/agents/ws"
        agent_task = asyncio.create_task(run_agent(ws_url, token, allowed=frozenset(DEFAULT_ALLOWED)))
        print(
            "\nEchoCenter demo is running.\n"
            f"  Chat (Feishu emulator): {emulator_url}/   ← pick Alice and the Ops chat, write:"
            f" run {DEMO_AGENT} uptime\n"
            f"  EchoCenter API:         {service_url}/docs\n"
            f"  Admin: {DEMO_ADMIN}, password in {password_file}\n"
            f"  Agent '{DEMO_AGENT}' runs: {', '.join(DEFAULT_ALLOWED)}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await asyncio.gather(*(task for _, task in servers))
    finally:
        if agent_task is not None:
            agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
        for server, _ in reversed(servers):
            server.should_exit = True
        await asyncio.gather(*(task for _, task in servers), return_exceptions=True)
