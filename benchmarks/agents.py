"""How many idle agents one instance holds, and what a heartbeat round of all of them costs (issue 15).

Starts `echocenter serve` (SQLite in a temporary directory), registers N agents (rows written straight into
its database: 20,000 POSTs would only measure registration), and connects them from separate client
processes (``websockets`` clients like the example agent, a few thousand each, keepalive pings on). Prints:
- the service's RSS at 1k / 5k / 10k / N connected, and the per-connection slope;
- a heartbeat round: every agent sends one heartbeat as fast as its process can; the service's CPU time
  and /api/health latency (p50/p99/max) while it is absorbed, and how long until the presence flush catches
  up;
- a steady window of 10 s heartbeats from every agent: connections closed by the service (must be 0),
  CPU share and health p50.

Usage: python benchmarks/agents.py [AGENTS] [--window SECONDS] [--per-process N]
(the open-files hard limit of the machine bounds AGENTS: 20,000 here, so 19,900 is the largest run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select
from websockets.asyncio.client import ClientConnection, connect

from echocenter.agents.service import TOKEN_PREFIX, hash_token
from echocenter.db.engine import make_engine
from echocenter.db.models import Agent
from echocenter.db.types import utcnow

sys.path.insert(0, str(Path(__file__).parent))
from _stack import free_port, poll, rss_mib, wait_http

CHECKPOINTS = (1_000, 5_000, 10_000)
HEARTBEAT = json.dumps({"type": "heartbeat"})
CONNECT_CONCURRENCY = 100  # per client process


# ---- the client process: holds its share of agents, obeys one-line commands on stdin -------------------


async def client_main(url: str, tokens: list[str]) -> None:
    sockets: list[ClientConnection] = []
    closed = 0
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def hold(token: str) -> None:
        nonlocal closed
        async with gate:
            ws = await connect(  # a generous handshake timeout: the shared machine may be loaded
                url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None, open_timeout=120
            )
        sockets.append(ws)
        await ws.wait_closed()
        closed += 1

    holders = [asyncio.create_task(hold(t)) for t in tokens]
    out = sys.stdout
    while len(sockets) < len(tokens):
        await asyncio.sleep(0.05)
        if any(h.done() and h.exception() is not None for h in holders):
            failed = next(h.exception() for h in holders if h.done() and h.exception() is not None)
            print(f"error {type(failed).__name__}: {failed}", file=out, flush=True)
            return
    print(f"connected {len(sockets)}", file=out, flush=True)

    steady: asyncio.Task[None] | None = None

    async def every(interval: float) -> None:  # each agent once per interval, spread evenly over it
        while True:
            started = time.monotonic()
            for i, ws in enumerate(sockets):
                if i % 100 == 0:
                    await asyncio.sleep(max(0.0, started + interval * i / len(sockets) - time.monotonic()))
                if ws.state.name == "OPEN":
                    await ws.send(HEARTBEAT)
            await asyncio.sleep(max(0.0, started + interval - time.monotonic()))

    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := (await reader.readline()).decode().strip():
        if line == "round":
            await asyncio.gather(*(ws.send(HEARTBEAT) for ws in sockets if ws.state.name == "OPEN"))
            print("sent", file=out, flush=True)
        elif line.startswith("steady"):
            steady = asyncio.create_task(every(float(line.split()[1])))
            print("steady", file=out, flush=True)
        elif line == "closed":
            print(f"closed {closed}", file=out, flush=True)
    if steady is not None:
        steady.cancel()


# ---- the controller ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Client:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return (await self.process.stdout.readline()).decode().strip()

    async def answer(self) -> str:
        assert self.process.stdout is not None
        return (await self.process.stdout.readline()).decode().strip()


async def health_sampler(http: httpx.AsyncClient, stop: asyncio.Event, every: float) -> list[float]:
    samples: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        await http.get("/api/health")
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(every)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def register(database: Path, count: int) -> list[str]:
    tokens = [TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(count)]
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(Agent),
                [
                    {"name": f"bench-{i:05d}", "token_hash": hash_token(t), "created_at": utcnow()}
                    for i, t in enumerate(tokens)
                ],
            )
    finally:
        await engine.dispose()
    return tokens


async def all_seen(database: Path, count: int, since: datetime) -> None:
    """Until the presence flush has written every agent's heartbeat of this round (the round is absorbed)."""
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        while True:
            async with engine.connect() as conn:
                seen = await conn.scalar(
                    select(func.count()).select_from(Agent).where(Agent.last_seen_at >= since)
                )
            if seen is not None and seen >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def main(agents: int, per_process: int, window: float, interval: float) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATA_DIR": data_dir,
            "DATABASE_URL": "",
            "INITIAL_ADMIN_USER": "bench",
            "INITIAL_ADMIN_PASS": password,
            "LOG_LEVEL": "WARNING",
        }
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "echocenter", "serve", "--port", str(port), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        clients: list[Client] = []
        try:
            await wait_http(url + "/api/health", 120)
            async with httpx.AsyncClient(base_url=url, timeout=10) as probe:  # 200 once migrated and serving

                async def serving() -> bool:
                    return (await probe.get("/api/health")).status_code == 200

                await poll(serving, 120)
            tokens = await register(Path(data_dir) / "echocenter.db", agents)
            async with httpx.AsyncClient(base_url=url, timeout=120) as http:
                login = await http.post("/api/auth/login", json={"username": "bench", "password": password})
                http.headers["Authorization"] = f"Bearer {login.json()['token']}"
                print(f"agents: {agents}, client processes of up to {per_process}; service pid {service.pid}")
                print(f"{'connected':>10} {'RSS MiB':>8}")
                print(f"{0:>10} {rss_mib(service.pid):>8.0f}")
                rss: dict[int, float] = {}
                connected = 0
                marks = [c for c in CHECKPOINTS if c < agents] + [agents]
                ws_url = url.replace("http", "ws", 1) + "/api/agents/ws"
                for mark in marks:
                    while connected < mark:
                        share = min(per_process, mark - connected)
                        tokens_file = Path(data_dir) / f"tokens-{connected}"
                        tokens_file.write_text("\n".join(tokens[connected : connected + share]))
                        process = await asyncio.create_subprocess_exec(
                            sys.executable, __file__, "--client", ws_url, str(tokens_file),
                            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                        )  # fmt: skip
                        clients.append(Client(process))
                        answer = await clients[-1].answer()
                        if not answer.startswith("connected"):
                            raise RuntimeError(f"client failed at {connected}: {answer}")
                        connected += share
                    await asyncio.sleep(3)  # let the connects' presence flush and garbage settle
                    rss[mark] = rss_mib(service.pid)
                    print(f"{mark:>10} {rss[mark]:>8.0f}")
                first, last = marks[0], marks[-1]
                if last > first:
                    slope = (rss[last] - rss[first]) * 1024 / (last - first)
                    print(f"per connection ({first}..{last}): {slope:.1f} KiB")

                # One heartbeat from every agent at once.
                stop = asyncio.Event()
                sampler = asyncio.create_task(health_sampler(http, stop, 0.02))
                round_start = utcnow()
                cpu0, started = cpu_seconds(service.pid), time.monotonic()
                for client in clients:
                    assert client.process.stdin is not None
                    client.process.stdin.write(b"round\n")
                await asyncio.gather(*(c.answer() for c in clients))
                sent = time.monotonic() - started
                await all_seen(Path(data_dir) / "echocenter.db", agents, round_start)
                absorbed = time.monotonic() - started
                cpu = cpu_seconds(service.pid) - cpu0
                await asyncio.sleep(1)  # and a second after it
                stop.set()
                samples = await sampler
                print(
                    f"heartbeat round: {agents} sent in {sent:.2f} s, all written by {absorbed:.2f} s; "
                    f"service CPU {cpu:.2f} s; health p50 {pct(samples, 0.5):.1f} ms, "
                    f"p99 {pct(samples, 0.99):.1f} ms, max {max(samples):.1f} ms ({len(samples)} samples)"
                )

                # Steady 10 s heartbeats for the window.
                for client in clients:
                    assert (await client.ask(f"steady {interval}")) == "steady"
                stop = asyncio.Event()
                sampler = asyncio.create_task(health_sampler(http, stop, 0.5))  # light: CPU is measured
                cpu0, started = cpu_seconds(service.pid), time.monotonic()
                await asyncio.sleep(window)
                cpu = cpu_seconds(service.pid) - cpu0
                stop.set()
                samples = await sampler
                closed = sum([int((await c.ask("closed")).split()[1]) for c in clients])
                page = (await http.get("/api/agents", params={"limit": 1})).json()
                print(
                    f"steady {window:.0f} s of {interval:g} s heartbeats: {closed} disconnects, service CPU "
                    f"{100 * cpu / window:.1f} % of one core, health p50 {pct(samples, 0.5):.1f} ms, "
                    f"p99 {pct(samples, 0.99):.1f} ms, max {max(samples):.1f} ms, "
                    f"online {page['online']}/{page['total']}, RSS {rss_mib(service.pid):.0f} MiB"
                )
                print("machine load (1/5/15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

                # All agents leave: how fast the service lets go of them.
                for client in clients:
                    client.process.kill()
                    await client.process.wait()
                started = time.monotonic()
                for _ in range(600):
                    if (await http.get("/api/agents", params={"limit": 1})).json()["online"] == 0:
                        break
                    await asyncio.sleep(0.2)
                print(
                    f"all disconnected: offline in the list after {time.monotonic() - started:.1f} s, "
                    f"RSS {rss_mib(service.pid):.0f} MiB"
                )
        finally:
            for client in clients:
                if client.process.returncode is None:
                    client.process.kill()
                    await client.process.wait()
            service.terminate()
            await service.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        asyncio.run(client_main(sys.argv[2], Path(sys.argv[3]).read_text().split()))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("agents", type=int, nargs="?", default=19_900)
    parser.add_argument("--per-process", type=int, default=5_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady heartbeats")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between an agent's heartbeats")
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.per_process, args.window, args.interval))
