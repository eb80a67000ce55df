"""Chaos benchmark: kill -9 in the middle of a message flow, and count what every message got.

Two scenarios, each with EchoCenter as real ``echocenter serve`` processes and the emulator delivering at
random among the live connections, pushing again what is not acked within Feishu's 3 s:

1. one instance on SQLite, 100 messages/s, killed -9 half-way, then restarted;
2. three instances on one PostgreSQL schema, 30 messages/s, one killed -9 (not restarted).

Printed per scenario: sent, acked (before the kill / in all), answered, answered twice (replies the users
see), reply requests (a re-driven reply is sent again with the same Feishu uuid, which Feishu — and the
emulator — answer with the first message instead of a second), lost (acked and never answered), commands
executed twice (the SQLite flow asks for a command in every tenth message; after the restart every card is
approved and a counting agent records each directive it gets).
It uses the harness of tests/e2e/test_durability.py (tests/support/fleet.py), so figures and tests measure
the same thing. PostgreSQL from TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).

Usage: python benchmarks/chaos.py [--single N] [--multi N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the harness lives in tests/support

from tests.support.databases import fresh_database
from tests.support.emulator import RunningEmulator, running_emulator
from tests.support.fleet import (
    CountingAgent,
    Service,
    Tally,
    approve_every_card,
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

# Feishu's own 3 s ack deadline, patient redelivery, quotas off (pacing: many_connectors.py, test_outbox.py).
FEISHU = patient_feishu(ack_timeout_seconds=3.0)


def killer(service: Service, tally: Tally, emu: RunningEmulator) -> Callable[[], Awaitable[None]]:
    async def kill() -> None:
        service.kill()
        await service.process.wait()
        tally.mark_kill(emu)

    return kill


@dataclass
class Commands:
    """Approved commands in a scenario: how many ran, and how many ran more than once (at the agent, or as a
    second approval for the same message)."""

    executed: int = 0
    executed_twice: int = 0


async def single_on_sqlite(count: int, work: Path) -> tuple[Tally, Commands]:
    tally, commands, agent = Tally(), Commands(), CountingAgent()
    url = f"sqlite+aiosqlite:///{work / 'echocenter.db'}"
    async with running_emulator(FEISHU) as emu, services() as running, database_engine(url, "") as engine:
        env = service_env(database_url=url, schema="", emulator_url=emu.url, data_dir=work / "data")
        running.append(await start_service(env, work / "single.log"))
        await create_connector(running[0])
        await wait_for(lambda: connections(emu), timeout=15, what="connected")
        kill = killer(running[0], tally, emu)
        await flow(emu, tally, count=count, rate=100, at=count // 2, event=kill, commands_every=10)
        running.append(await start_service(env, work / "single.log"))
        serving = asyncio.create_task(agent.serve(running[1], await register_agent(running[1])))
        try:
            await settle(emu, tally, engine, timeout=120)
            approvals = await approve_every_card(running[1], emu)
        finally:
            serving.cancel()
    per_message = Counter(a["source_message_id"] for a in approvals if a["status"] == "EXECUTED")
    commands.executed = sum(1 for a in approvals if a["status"] == "EXECUTED")
    commands.executed_twice = sum(1 for n in agent.runs.values() if n > 1)
    commands.executed_twice += sum(1 for n in per_message.values() if n > 1)
    return tally, commands


async def several_on_postgresql(count: int, work: Path) -> Tally:
    """No commands here: an agent held by one instance and approved on another is multi-instance work of its
    own (agent presence across instances)."""
    tally = Tally()
    async with (
        running_emulator(FEISHU) as emu,
        fresh_database("postgresql", work) as db,
        services() as running,
    ):
        env = service_env(database_url=db.url, schema=db.schema, emulator_url=emu.url, data_dir=work / "data")
        running.append(await start_service(env, work / "multi-1.log"))
        await create_connector(running[0])  # before the others start, so each connects at start
        running.extend(await asyncio.gather(*(start_service(env, work / f"multi-{i}.log") for i in (2, 3))))

        async def three() -> bool:
            return await connections(emu) >= 3

        await wait_for(three, timeout=30, what="three connections")
        await flow(emu, tally, count=count, rate=30, at=count // 2, event=killer(running[1], tally, emu))
        async with database_engine(db.url, db.schema) as engine:
            await settle(emu, tally, engine, timeout=120)
    return tally


HEADER = (
    "| scenario | sent | acked before the kill / in all | of those, unanswered at the kill | answered "
    "| answered twice | reply requests (answers and cards) | lost | commands executed twice |"
)


def row(name: str, tally: Tally, commands: Commands | None) -> str:
    f = tally.figures()
    cells = [name, f["sent"], f"{f['acked before the kill']} / {f['acked']}", f["unanswered at the kill"]]
    cells += [f["answered"], f["answered twice"], f["reply requests"], f["lost"]]
    cells += [f"{commands.executed_twice} (of {commands.executed} run)" if commands else "— (none sent)"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=300, help="messages in the SQLite scenario")
    parser.add_argument("--multi", type=int, default=150, help="messages in the PostgreSQL scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as single_dir, tempfile.TemporaryDirectory() as multi_dir:
        single, commands = await single_on_sqlite(args.single, Path(single_dir))
        several = await several_on_postgresql(args.multi, Path(multi_dir))
    print(HEADER)
    print("|---" * (HEADER.count(" | ") + 1) + "|")
    print(row("1 instance, SQLite, kill -9 at 100 msg/s, restart", single, commands))
    print(row("3 instances, PostgreSQL, one killed -9 at 30 msg/s", several, None))


if __name__ == "__main__":
    asyncio.run(main())
