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


def _status_mib(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (kB there) in MiB; NaN when the kernel does not report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS)."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    """The most resident memory the process has had (VmHWM)."""
    return _status_mib(pid, "VmHWM")


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


# Outbox pacing off: a benchmark of the service alone (quotas off in the emulator too) must not be paced.
NO_PACING = {
    "FEISHU_SEND_QPS_PER_APP": "0",
    "FEISHU_SEND_PER_MINUTE_PER_APP": "0",
    "FEISHU_SEND_QPS_PER_CHAT": "0",
    "FEISHU_PATCH_QPS_PER_MESSAGE": "0",
}


@dataclass
class Services:
    emulator_url: str
    service_url: str
    emu: httpx.AsyncClient
    api: httpx.AsyncClient  # logged in as the admin
    service_pid: int
    processes: list[asyncio.subprocess.Process]


@asynccontextmanager
async def services(
    *, noop_butler: bool = False, quotas: bool = False, env_extra: dict[str, str] | None = None
) -> AsyncIterator[Services]:
    """The emulator and EchoCenter, each in its own process. ``quotas``: the emulator enforces Feishu's send
    quotas and EchoCenter paces itself (its defaults); otherwise both are off (the service alone).
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
            **({} if quotas else NO_PACING),
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
                await emu.post("/control/config", json={"quotas_enabled": quotas})
                login = await api.post("/api/auth/login", json={"username": "bench", "password": password})
                api.headers["Authorization"] = f"Bearer {login.json()['token']}"
                yield Services(emulator_url, service_url, emu, api, service.pid, processes)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                await process.wait()


async def add_connector(api: httpx.AsyncClient, app_id: str, app_secret: str, **settings: object) -> int:
    """Create, verify and enable a connector; wait until its long connection is up."""
    created = (
        await api.post(
            "/api/integrations/feishu", json={"app_id": app_id, "app_secret": app_secret, **settings}
        )
    ).json()
    cid: int = created["id"]
    await api.post(f"/api/integrations/feishu/{cid}/verify-callback")
    await api.patch(f"/api/integrations/feishu/{cid}/enable", json={"enabled": True})
    for _ in range(300):
        if (await api.get(f"/api/integrations/feishu/{cid}")).json()["status"] == "connected":
            break
        await asyncio.sleep(0.1)
    return cid


@asynccontextmanager
async def stack(
    *,
    noop_butler: bool = False,
    quotas: bool = False,
    env_extra: dict[str, str] | None = None,
    **connector: object,
) -> AsyncIterator[Stack]:
    """Emulator and EchoCenter with one connector; ``noop_butler`` measures the ingress without the Butler's
    replies."""
    async with services(noop_butler=noop_butler, quotas=quotas, env_extra=env_extra) as s:
        cid = await add_connector(s.api, *EMULATOR_APP, **connector)
        yield Stack(s.emulator_url, s.service_url, s.emu, s.api, s.service_pid, cid, s.processes)
