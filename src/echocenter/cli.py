"""`echocenter serve | demo | emulator | agent run | doctor | migrate | audit verify | admin create`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import os
import sys
from typing import TypeAlias

from pydantic import ValidationError

from echocenter.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from echocenter.agents.socket import AgentSocketRoute
    from echocenter.app import create_app
    from echocenter.fd_limits import raise_open_files_limit
    from echocenter.logging_setup import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    raise_open_files_limit()
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    # What start-up built lives as long as the process: kept out of the collector's full passes, whose
    # pauses (tens of ms on a full heap) would otherwise land on some acks (issue 9's ack p99).
    gc.freeze()
    uvicorn.run(
        AgentSocketRoute(app, state=app.state),  # agent sockets: the leanest path (agents/socket.py)
        interface="asgi3",  # not guessed: the route's __call__ is a plain function returning a coroutine
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # Issue 15 (README "Many agents on one instance"): agent frames are small, so compression saves
        # nothing and its per-connection state would cost about half of each agent socket's memory; the
        # sans-I/O protocol, trimmed further, is the lightest uvicorn serves.
        ws_per_message_deflate=False,
        ws="echocenter.lean_websocket:LeanWebSocketProtocol",
        loop="echocenter.fd_limits:CalmAcceptLoop",  # EMFILE: back off, one log line
    )
    return 0


def _emulator(args: argparse.Namespace) -> int:
    import uvicorn

    from echocenter.emulator import create_emulator_app
    from echocenter.emulator.state import World

    print(f"Feishu emulator on http://{args.host}:{args.port}/  (chat page; control API under /control)")
    print(f"default app: app_id={World.DEFAULT_APP_ID} app_secret={World.DEFAULT_APP_SECRET}")
    uvicorn.run(create_emulator_app(), host=args.host, port=args.port, log_level="warning")
    return 0


def _agent_run(args: argparse.Namespace) -> int:
    from echocenter.agents.example import DEFAULT_ALLOWED, AgentStop, agent_url, run_agent
    from echocenter.logging_setup import configure_logging

    configure_logging("INFO")
    token = args.token or os.environ.get("ECHOCENTER_AGENT_TOKEN", "")
    if not token:
        print("error: give --token or set ECHOCENTER_AGENT_TOKEN", file=sys.stderr)
        return 2
    allowed = frozenset(" ".join(c.split()) for c in (args.allow or DEFAULT_ALLOWED))
    try:
        url = agent_url(args.url)
        print(f"agent: connecting to {url}; allowed commands: {', '.join(sorted(allowed))}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_agent(url, token, allowed=allowed, timeout=args.timeout))
    except AgentStop as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from echocenter.demo import run_demo
    from echocenter.logging_setup import configure_logging

    configure_logging("WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo(
                host=args.host, port=args.port, emulator_port=args.emulator_port, data_dir=Path(args.data_dir)
            )
        )
    return 0


def _prepare_data_files(settings: Settings) -> None:
    from echocenter.filemodes import make_private_dir, secure_sqlite_files

    make_private_dir(settings.data_dir)
    secure_sqlite_files(settings.resolved_database_url)


async def _migrate() -> None:
    from echocenter.db.engine import make_engine
    from echocenter.db.migrate import upgrade_to_head

    settings = Settings()
    _prepare_data_files(settings)
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def _create_admin(username: str, password: str, role: str) -> None:
    from echocenter.auth.passwords import Passwords
    from echocenter.auth.service import create_user
    from echocenter.db.engine import make_engine, make_sessionmaker
    from echocenter.db.migrate import upgrade_to_head
    from echocenter.db.models import Role

    settings = Settings()
    _prepare_data_files(settings)
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        await upgrade_to_head(engine)  # the same engine migrates and then writes the user
        async with make_sessionmaker(engine)() as session:
            await create_user(
                session,
                passwords=Passwords.from_settings(settings),
                username=username,
                password=password,
                role=Role(role),
            )
    finally:
        await engine.dispose()


def _admin_create(args: argparse.Namespace) -> int:
    from echocenter.credential_rules import password_problem, username_problem
    from echocenter.errors import Conflict, InvalidRequest

    problem = username_problem(args.username)
    if problem is None:
        password = os.environ.get("ECHOCENTER_NEW_PASSWORD") or getpass.getpass(
            f"password for {args.username}: "
        )
        problem = password_problem(password)  # the same rules as the API and INITIAL_ADMIN_PASS
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_create_admin(args.username, password, args.role))
    except (Conflict, InvalidRequest) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"created {args.role} {args.username}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from echocenter.doctor_cli import run_doctor

    return asyncio.run(run_doctor(connector_id=args.connector, chat_id=args.chat, as_json=args.json))


def _audit_verify(args: argparse.Namespace) -> int:
    import json

    from echocenter.approvals.audit_cli import report, verify_chain

    result = asyncio.run(verify_chain())
    print(json.dumps(result.as_dict()) if args.json else report(result))
    return 0 if result.ok else 1


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echocenter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_serve,
        _add_demo,
        _add_emulator,
        _add_agent,
        _add_doctor,
        _add_migrate,
        _add_audit,
        _add_admin,
    ):
        add(commands)
    return parser


def _add_serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the service (settings from the environment, see README)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)


def _add_demo(commands: Commands) -> None:
    demo = commands.add_parser("demo", help="service + Feishu emulator + example agent, wired together")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080, help="EchoCenter's port")
    demo.add_argument("--emulator-port", type=int, default=9000)
    demo.add_argument("--data-dir", default="data/demo", help="the demo's SQLite database and keys")
    demo.set_defaults(run=_demo)


def _add_emulator(commands: Commands) -> None:
    emulator = commands.add_parser("emulator", help="run the local Feishu emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=9000)
    emulator.set_defaults(run=_emulator)


def _add_agent(commands: Commands) -> None:
    agent = commands.add_parser("agent", help="the bundled example agent")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    agent_run = agent_commands.add_parser("run", help="connect to EchoCenter and run allowed commands")
    agent_run.add_argument(
        "--url",
        required=True,
        help="the service's base URL (http(s)://HOST:PORT) or ws(s)://HOST:PORT/api/agents/ws",
    )
    agent_run.add_argument("--token", help="the agent token (or ECHOCENTER_AGENT_TOKEN)")
    agent_run.add_argument("--allow", action="append", help="an allowed command line (repeatable)")
    agent_run.add_argument("--timeout", type=float, default=30.0, help="seconds a command may take")
    agent_run.set_defaults(run=_agent_run)


def _add_doctor(commands: Commands) -> None:
    doctor = commands.add_parser(
        "doctor", help="check a connector against Feishu (same settings as serve); non-zero exit on a failure"
    )
    doctor.add_argument("--connector", type=int, help="connector id (default: the only one)")
    doctor.add_argument("--chat", help="also send a real test message to this chat_id (oc_…) or open_id")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(run=_doctor)


def _add_migrate(commands: Commands) -> None:
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=lambda _args: asyncio.run(_migrate()) or 0)


def _add_audit(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="the approval timeline")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check the hash chain; exit 1 at the first broken link")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_audit_verify)


def _add_admin(commands: Commands) -> None:
    admin = commands.add_parser("admin", help="manage users")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_commands.add_parser(
        "create", help="create a user (password from ECHOCENTER_NEW_PASSWORD or a prompt)"
    )
    create.add_argument("--username", required=True)
    create.add_argument("--role", choices=["ADMIN", "MEMBER"], default="ADMIN")
    create.set_defaults(run=_admin_create)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.run(args))
    except ValidationError as exc:  # a setting is refused: say which and why, without a traceback
        for error in exc.errors():
            print(f"error: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        sys.exit(2)
