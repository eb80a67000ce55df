"""Nothing acknowledged is ever lost, nothing is answered twice — with real processes, a real kill -9 and a
real database cut away (issue 9). EchoCenter runs as ``echocenter serve`` subprocesses; the emulator (in the
test's process) delivers at random among the live connections and pushes again whatever is not acked, as
Feishu does; it counts the replies to every message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import POSTGRES_URL, fresh_database
from tests.support.emulator import RunningEmulator
from tests.support.fleet import (
    Tally,
    connections,
    create_connector,
    database_engine,
    flow,
    patient_feishu,
    register_agent,
    service_env,
    services,
    settle,
    start_service,
    wait_for,
)
from tests.support.tcp_proxy import tcp_proxy

# Redelivery every second, patient enough to outlast a restart or an outage; card answers as usual.
pytestmark = pytest.mark.emulator(patient_feishu(ack_timeout_seconds=1.0))


def _assert_exactly_once(tally: Tally) -> None:
    figures = tally.figures()
    assert tally.acked_before_kill <= tally.answered, figures
    assert not tally.lost, figures
    assert not tally.answered_twice, figures
    assert tally.answered == set(tally.sent), figures  # what was not acked came again and was answered


async def test_one_instance_on_sqlite_killed_mid_flow_answers_every_message_once(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'echocenter.db'}"
    env = service_env(database_url=url, schema="", emulator_url=emu.url, data_dir=tmp_path / "data")
    tally = Tally()
    async with services() as running, database_engine(url, "") as engine:
        running.append(await start_service(env, tmp_path / "service.log"))
        await create_connector(running[0])
        await register_agent(running[0])  # a command for an unregistered agent gets no card
        await wait_for(lambda: connections(emu), timeout=15, what="connected")

        async def kill() -> None:
            running[0].kill()
            await running[0].process.wait()
            tally.mark_kill(emu)

        await flow(emu, tally, count=200, rate=100, at=100, event=kill, commands_every=10)
        assert tally.acked_before_kill, "the kill came before anything was acked: nothing was tested"
        running.append(await start_service(env, tmp_path / "service.log"))
        await settle(emu, tally, engine)
    _assert_exactly_once(tally)
    # Every tenth message asked to run a command: each got its approval card, once.
    assert sorted(tally.cards.values()) == [1] * 20, tally.cards


async def test_three_instances_on_postgresql_one_killed_answer_every_message_once(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    tally = Tally()
    async with fresh_database("postgresql", tmp_path) as db, services() as running:
        env = service_env(
            database_url=db.url, schema=db.schema, emulator_url=emu.url, data_dir=tmp_path / "data"
        )
        running.append(await start_service(env, tmp_path / "s1.log"))
        await create_connector(running[0])  # before the others start, so each connects at start
        running.extend(await asyncio.gather(*(start_service(env, tmp_path / f"s{i}.log") for i in (2, 3))))
        await wait_for(lambda: _at_least(emu, 3), timeout=20, what="three connections")

        async def kill() -> None:
            running[1].kill()
            await running[1].process.wait()
            tally.mark_kill(emu)

        await flow(emu, tally, count=150, rate=30, at=60, event=kill)
        assert tally.acked_before_kill
        async with database_engine(db.url, db.schema) as engine:
            await settle(emu, tally, engine)
    _assert_exactly_once(tally)


async def _at_least(emu: RunningEmulator, n: int) -> bool:
    return await connections(emu) >= n


async def _ready(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url + "/api/health/ready")
        body: dict[str, Any] = response.json()
        return response.status_code, body


async def test_a_database_outage_loses_nothing_acked_and_readiness_reports_it(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    host_port = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    tally = Tally()
    async with (
        fresh_database("postgresql", tmp_path) as db,
        tcp_proxy(host, int(port)) as proxy,
        services() as running,
    ):
        proxied = db.url.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/")
        env = service_env(
            database_url=proxied, schema=db.schema, emulator_url=emu.url, data_dir=tmp_path / "data"
        )
        service = await start_service(env, tmp_path / "service.log")
        running.append(service)
        assert (await _ready(service.url))[0] == 200
        await create_connector(service)
        await wait_for(lambda: connections(emu), timeout=15, what="connected")
        outage: list[tuple[int, dict[str, Any]]] = []

        async def cut_for_a_while() -> None:
            proxy.cut()
            outage.append(await wait_for(lambda: _not_ready(service.url), timeout=10, what="503"))
            # The database stays away while 150 more messages are sent (5 s at 30/s).
            await wait_for(lambda: _sent_at_least(tally, 210), timeout=30, what="the flow went on")
            proxy.restore()

        outage_task: list[asyncio.Task[None]] = []

        async def start_outage() -> None:
            outage_task.append(asyncio.create_task(cut_for_a_while()))

        await flow(emu, tally, count=300, rate=30, at=60, event=start_outage)
        await outage_task[0]
        status, body = outage[0]
        assert status == 503 and "database" in body["checks"], body
        assert body["error"]["code"] == "not_ready"
        # What could not be stored was not acked, so the emulator pushed it again (as Feishu does).
        assert emu.world.counters["ws.redelivery"] > 0
        await wait_for(lambda: _is_ready(service.url), timeout=30, what="ready again")
        async with database_engine(db.url, db.schema) as engine:
            await settle(emu, tally, engine)
    _assert_exactly_once(tally)


async def _not_ready(url: str) -> tuple[int, dict[str, Any]] | None:
    status, body = await _ready(url)
    return (status, body) if status == 503 else None


async def _is_ready(url: str) -> bool:
    return (await _ready(url))[0] == 200


async def _sent_at_least(tally: Tally, n: int) -> bool:
    return len(tally.sent) >= n
