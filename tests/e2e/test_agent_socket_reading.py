"""An agent socket keeps being read while the database is busy: its hello is written beside the read
loop, so the frames after it (here a ping) are answered at once. `echocenter serve` (uvicorn stops reading
a socket while its last frame waits for the app), SQLite held locked by another writer."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.e2e.test_open_files import ADMIN, service_with_few_descriptors
from tests.support.processes import wait_healthy
from tests.support.waiting import eventually


async def test_a_hello_waiting_on_the_database_does_not_stop_the_socket_being_read(tmp_path: Path) -> None:
    with service_with_few_descriptors(tmp_path, open_files=1024) as service:
        await wait_healthy(service)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            login = await http.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            token = (await http.post("/api/agents", json={"name": "busy-db"})).json()["token"]
            ws_url = service.url.replace("http", "ws", 1) + "/api/agents/ws"
            bearer = {"Authorization": f"Bearer {token}"}
            async with connect(ws_url, additional_headers=bearer, proxy=None, ping_interval=None) as ws:
                writer = sqlite3.connect(tmp_path / "data" / "echocenter.db", timeout=5, isolation_level=None)
                try:
                    writer.execute("BEGIN IMMEDIATE")  # the service's writes wait from here on
                    await ws.send(json.dumps({"type": "hello", "commands": ["uptime"]}))
                    # uvicorn stops reading when a frame waits for the app: a handler stuck on the hello
                    # would leave this heartbeat waiting, and the ping behind it unread.
                    await ws.send(json.dumps({"type": "heartbeat"}))
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, timeout=3)  # read and answered while the hello waits
                finally:
                    writer.execute("ROLLBACK")
                    writer.close()

                async def declared() -> bool:
                    [agent] = (await http.get("/api/agents", params={"q": "busy-db"})).json()["items"]
                    return bool(agent["declared_commands"] == ["uptime"])

                await eventually(declared)  # and the hello is written once the database is free
