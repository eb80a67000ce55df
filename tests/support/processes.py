"""EchoCenter as real processes (`echocenter serve`, settings from the environment), several at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ECHOCENTER = str(Path(sys.executable).with_name("echocenter"))
START_DEADLINE = 45.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    instance_id: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None


def start_service(env: Mapping[str, str], *, instance_id: str, workdir: Path) -> ServiceProcess:
    """Start one `echocenter serve` on a port of its own; returns at once (see ``wait_healthy``)."""
    port = free_port()
    data_dir = workdir / instance_id
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{instance_id}.log"
    full_env = {
        **os.environ,
        **env,
        "INSTANCE_ID": instance_id,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(data_dir),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [ECHOCENTER, "serve"], env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
        )
    return ServiceProcess(instance_id, f"http://127.0.0.1:{port}", process, log_path)


async def wait_healthy(service: ServiceProcess, *, deadline: float = START_DEADLINE) -> None:
    """Until /api/health answers 200; fails at once (with the log) if the process exits."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if not service.alive():
                raise AssertionError(
                    f"{service.instance_id} exited with {service.process.returncode}:\n{service.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{service.url}/api/health")).status_code == 200:
                    return
            if loop.time() > until:
                raise AssertionError(
                    f"{service.instance_id} not healthy in {deadline} s:\n{service.log_tail()}"
                )
            await asyncio.sleep(0.1)


def stop_service(service: ServiceProcess) -> None:
    if service.alive():
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(10)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@asynccontextmanager
async def services_started_together(
    env: Mapping[str, str], *, count: int, workdir: Path, prefix: str = "inst"
) -> AsyncIterator[list[ServiceProcess]]:
    """``count`` instances started at the same moment on the same settings; each must come up."""
    started = [start_service(env, instance_id=f"{prefix}-{i + 1}", workdir=workdir) for i in range(count)]
    try:
        await asyncio.gather(*(wait_healthy(s) for s in started))
        yield started
    finally:
        for service in started:
            stop_service(service)
