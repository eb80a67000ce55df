"""The processes a benchmark measures: the emulator and EchoCenter (SQLite), each in its own process."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

EMULATOR_APP = ("cli_emulator0001", "emulator-secret-0123456789abcdef")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                await http.get(url)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def poll(probe: Any, timeout: float = 30) -> Any:
    """``probe()`` until it returns something truthy; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise TimeoutError("benchmark step did not complete")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Stack:
    emulator_url: str
    service_url: str
    emu: httpx.AsyncClient
    api: httpx.AsyncClient  # logged in as admin
    service_pid: int
    connector_id: int
    processes: list[asyncio.subprocess.Process]

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        self.processes.append(process)
        return process


@asynccontextmanager
async def stack(
    *, noop_butler: bool = False, env_extra: dict[str, str] | None = None, **connector: object
) -> AsyncIterator[Stack]:
    """Emulator and EchoCenter; ``noop_butler`` measures the ingress without the Butler's replies;
    ``env_extra`` adds settings (e.g. an LLM brain)."""
    python = sys.executable
    emu_port, svc_port = free_port(), free_port()
    emulator_url, service_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{svc_port}"
    password = secrets.token_urlsafe(12)
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    processes: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATA_DIR": data_dir,
            "DATABASE_URL": "",
            "FEISHU_BASE_URL": emulator_url,
            "FEISHU_WS_ENABLED": "true",
            "INITIAL_ADMIN_USER": "bench",
            "INITIAL_ADMIN_PASS": password,
            "LOG_LEVEL": "WARNING",
            **(env_extra or {}),
        }
        try:
            processes.append(
                await asyncio.create_subprocess_exec(
                    python, "-m", "echocenter", "emulator", "--port", str(emu_port), **quiet
                )
            )
            await wait_http(emulator_url + "/control/state")
            command = (
                [python, str(Path(__file__).parent / "_noop_service.py"), str(svc_port)]
                if noop_butler
                else [python, "-m", "echocenter", "serve", "--port", str(svc_port)]
            )
            service = await asyncio.create_subprocess_exec(*command, env=env, **quiet)
            processes.append(service)
            await wait_http(service_url + "/api/health")
            async with (
                httpx.AsyncClient(base_url=emulator_url, timeout=60) as emu,
                httpx.AsyncClient(base_url=service_url, timeout=60) as api,
            ):
                login = await api.post("/api/auth/login", json={"username": "bench", "password": password})
                api.headers["Authorization"] = f"Bearer {login.json()['token']}"
                created = (
                    await api.post(
                        "/api/integrations/feishu",
                        json={"app_id": EMULATOR_APP[0], "app_secret": EMULATOR_APP[1], **connector},
                    )
                ).json()
                cid = created["id"]
                await api.post(f"/api/integrations/feishu/{cid}/verify-callback")
                await api.patch(f"/api/integrations/feishu/{cid}/enable", json={"enabled": True})
                for _ in range(300):
                    if (await api.get(f"/api/integrations/feishu/{cid}")).json()["status"] == "connected":
                        break
                    await asyncio.sleep(0.1)
                yield Stack(emulator_url, service_url, emu, api, service.pid, cid, processes)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                await process.wait()
