"""Out of file descriptors (EMFILE): `echocenter serve` backs off accepting, logs one line per interval,
keeps serving the connections it has (HTTP keep-alive, agent sockets) and says so in /api/health; once
descriptors are free again it accepts again. A real process with a lowered RLIMIT_NOFILE."""

from __future__ import annotations

import resource
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from websockets.asyncio.client import connect

from tests.support.processes import ECHOCENTER, ServiceProcess, free_port, stop_service, wait_healthy
from tests.support.waiting import eventually

OPEN_FILES = 96  # soft and hard: the service cannot raise it
ADMIN = ("admin", "admin-password-1")


@contextmanager
def service_with_few_descriptors(tmp_path: Path, open_files: int = OPEN_FILES) -> Iterator[ServiceProcess]:
    """`echocenter serve` on SQLite with RLIMIT_NOFILE lowered (soft and hard) to ``open_files``."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "ENVIRONMENT": "test",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SECRETS_KEY": Fernet.generate_key().decode(),
        "INITIAL_ADMIN_USER": ADMIN[0],
        "INITIAL_ADMIN_PASS": ADMIN[1],
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "LOG_LEVEL": "INFO",
    }

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [ECHOCENTER, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lower_limit
        )
    service = ServiceProcess("fd-test", f"http://127.0.0.1:{port}", process, log_path)
    try:
        yield service
    finally:
        stop_service(service)


def _lines(service: ServiceProcess, word: str) -> list[str]:
    return [line for line in service.log_tail(10_000_000).splitlines() if word in line]


async def test_out_of_descriptors_keeps_http_answering_and_the_log_calm(tmp_path: Path) -> None:
    with service_with_few_descriptors(tmp_path) as service, ExitStack() as held:
        await wait_healthy(service)
        [limit_line] = _lines(service, "open_files_limit")
        assert f"soft={OPEN_FILES}" in limit_line and f"hard={OPEN_FILES}" in limit_line

        # One HTTP keep-alive connection and one agent socket, opened while descriptors are free.
        async with httpx.AsyncClient(
            base_url=service.url, timeout=5, limits=httpx.Limits(max_connections=1)
        ) as http:
            login = await http.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            token = (await http.post("/api/agents", json={"name": "keeper"})).json()["token"]
            ws_url = service.url.replace("http", "ws", 1) + "/api/agents/ws"
            bearer = {"Authorization": f"Bearer {token}"}
            async with connect(ws_url, additional_headers=bearer, proxy=None) as ws:
                health: dict[str, Any] = (await http.get("/api/health")).json()
                assert health["accepting_connections"] is True
                assert health["open_files_limit"] == OPEN_FILES

                # More connections than the process may hold: it accepts until EMFILE, the rest wait.
                port = int(service.url.rsplit(":", 1)[1])
                for _ in range(OPEN_FILES + 20):
                    held.enter_context(socket.create_connection(("127.0.0.1", port)))

                async def retried_a_few_times() -> dict[str, Any]:
                    body: dict[str, Any] = (await http.get("/api/health")).json()
                    return body if body["accept_failures"] >= 3 else {}

                health = await eventually(retried_a_few_times, timeout=20)
                assert health["status"] == "ok" and health["accepting_connections"] is False
                ready = await http.get("/api/health/ready")
                assert ready.status_code == 503 and "connections" in ready.json()["checks"]
                # The existing connections are still served: HTTP keep-alive above, the agent socket here.
                await (await ws.ping())
                assert (await http.get("/api/agents")).json()["online"] == 1
                # One log line for several failures, and no asyncio tracebacks.
                assert len(_lines(service, "accept_backoff")) == 1
                assert not _lines(service, "Traceback")
                assert not _lines(service, "out of system resource")

                held.close()  # descriptors free again: the service accepts new connections

                async def accepting() -> bool:
                    try:
                        async with httpx.AsyncClient(base_url=service.url, timeout=2) as fresh:
                            return bool((await fresh.get("/api/health")).json()["accepting_connections"])
                    except httpx.HTTPError:
                        return False

                await eventually(accepting, timeout=20)
                assert (await http.get("/api/health/ready")).status_code == 200
