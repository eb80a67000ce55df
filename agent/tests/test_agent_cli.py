"""The agent as its operator meets it: ``--check``, a clear stop on a malformed URL or a refused token, and
the protocol against a local WebSocket server (hello first, directives answered, reconnect after a drop)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from echocenter_agent.client import Fatal, backoff
from echocenter_agent.client import serve as agent_serve
from echocenter_agent.config import parse_config

SRC = Path(__file__).resolve().parents[1] / "src"


def _write(tmp_path: Path, url: str) -> Path:
    (tmp_path / "token").write_text("eca_test_token\n")
    path = tmp_path / "agent.toml"
    path.write_text(
        f'url = "{url}"\ntoken_file = "token"\n[[commands]]\nrun = "echo restart {{unit}}"\n'
        'params.unit = { choices = ["nginx"] }\n'
    )
    return path


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "echocenter_agent", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_check_validates_and_prints_the_commands(tmp_path: Path) -> None:
    code, out, _ = await _cli("--config", str(_write(tmp_path, "https://ops.example.com")), "--check")
    assert code == 0
    assert "service: wss://ops.example.com/api/agents/ws" in out
    assert "echo restart {unit}" in out and "{unit}: one of nginx" in out


async def test_a_malformed_url_stops_with_exit_2(tmp_path: Path) -> None:
    code, _, err = await _cli("--config", str(_write(tmp_path, "localhost:8080")))
    assert code == 2 and "configuration error: url:" in err


@asynccontextmanager
async def _server(handler: Any, **kwargs: Any) -> AsyncIterator[str]:
    server: Server
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/agents/ws"


async def test_a_refused_token_stops_with_exit_3(tmp_path: Path) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "unknown or revoked agent token\n")

    async def never(_: ServerConnection) -> None:
        raise AssertionError("the handshake was refused")

    async with _server(never, process_request=refuse) as url:
        code, _, err = await _cli("--config", str(_write(tmp_path, url)))
    assert code == 3 and "refused the agent token" in err


async def test_hello_first_then_directives_answered_and_a_reconnect_after_a_drop(tmp_path: Path) -> None:
    connections = asyncio.Queue[ServerConnection]()
    received = asyncio.Queue[tuple[int, dict[str, Any]]]()  # (connection number, message)
    headers: list[str | None] = []

    async def handler(connection: ServerConnection) -> None:
        headers.append(connection.request.headers.get("Authorization") if connection.request else None)
        number = len(headers)
        await connections.put(connection)
        async for raw in connection:
            await received.put((number, json.loads(raw)))

    async def next_message() -> tuple[int, dict[str, Any]]:
        return await asyncio.wait_for(received.get(), 10)

    async with _server(handler) as url:
        config = parse_config(
            {
                "url": url,
                "token": "eca_t",
                "heartbeat_seconds": 60,
                "commands": [{"run": "echo restart {unit}", "params": {"unit": {"choices": ["nginx"]}}}],
            }
        )
        agent = asyncio.create_task(agent_serve(config, backoff_cap=0.2))
        try:
            first = await asyncio.wait_for(connections.get(), 10)
            assert await next_message() == (
                1,
                {"type": "hello", "commands": ["echo restart {unit}"], "name": "", "version": "0.1.0"},
            )
            for request_id, command in (("r1", "echo restart nginx"), ("r2", "echo restart sshd; reboot")):
                directive = {"type": "directive", "request_id": request_id, "command": command}
                await first.send(json.dumps(directive))
            results = {m["request_id"]: m for _, m in [await next_message(), await next_message()]}
            assert results["r1"]["ok"] and results["r1"]["output"] == "restart nginx\n"
            assert not results["r2"]["ok"] and "refused" in results["r2"]["output"]
            await first.close()  # the service went away: the agent comes back by itself
            second_number, second_hello = await next_message()
            assert second_number == 2 and second_hello["type"] == "hello"
        finally:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
    assert headers == ["Bearer eca_t", "Bearer eca_t"]


def test_backoff_starts_random_doubles_and_is_capped() -> None:
    delays = backoff(initial=1, factor=2, cap=8)
    first = next(delays)
    assert 0 <= first <= 1
    rest = [next(delays) for _ in range(8)]
    assert 0.8 <= rest[0] <= 1.2 and 1.6 <= rest[1] <= 2.4
    assert all(d <= 8 * 1.2 for d in rest) and rest[-1] >= 8 * 0.8


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a certificate no default trust store knows."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_an_untrusted_certificate_stops_the_agent(tmp_path: Path) -> None:
    async def never(_: ServerConnection) -> None:
        raise AssertionError("the agent must not talk to an unverified server")

    async with serve(never, "127.0.0.1", 0, ssl=_self_signed(tmp_path)) as server:
        port = server.sockets[0].getsockname()[1]
        config = parse_config(
            {"url": f"wss://127.0.0.1:{port}", "token": "eca_t", "commands": [{"run": "date"}]}
        )
        with pytest.raises(Fatal, match=r"TLS certificate .* is not trusted"):
            await asyncio.wait_for(agent_serve(config, backoff_cap=0.2), 10)
