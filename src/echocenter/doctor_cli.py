"""``echocenter doctor``: read the connector from the service's database (the same settings as ``serve``),
run the checks of ``feishu/doctor.py`` and print each as ok / failed with Feishu's code, msg and the fix.

Exit status: 0 all passed, 1 a check failed, 2 no such connector (or no database to read it from).
"""

from __future__ import annotations

import json
import sys

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.models import FeishuConnector
from echocenter.errors import EchoCenterError
from echocenter.feishu.doctor import Check, diagnose_connector
from echocenter.secretbox import SecretBox
from echocenter.settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2
_MARK = {"ok": "ok     ", "failed": "FAILED ", "skipped": "skipped"}


class _NoConnector(EchoCenterError):
    """No connector to diagnose, or no way to tell which one."""


async def _connector(settings: Settings, connector_id: int | None) -> FeishuConnector:
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    try:
        async with make_sessionmaker(engine)() as session:
            if connector_id is not None:
                connector = await session.get(FeishuConnector, connector_id)
                if connector is None:
                    raise _NoConnector(f"there is no connector {connector_id}")
                return connector
            connectors = list(await session.scalars(select(FeishuConnector).order_by(FeishuConnector.id)))
    except SQLAlchemyError as exc:
        raise _NoConnector(f"cannot read connectors from the database ({type(exc).__name__})") from exc
    finally:
        await engine.dispose()
    if not connectors:
        raise _NoConnector("there is no connector yet: create one first (admin page or API)")
    if len(connectors) > 1:
        listed = ", ".join(f"{c.id} ({c.connector_name})" for c in connectors)
        raise _NoConnector(f"several connectors: choose one with --connector ({listed})")
    return connectors[0]


def _print(checks: list[Check]) -> None:
    for check in checks:
        print(f"{_MARK[check.status]} {check.name}: {check.summary}")
        if check.feishu_code is not None or check.feishu_msg:
            http = f", HTTP {check.http_status}" if check.http_status else ""
            print(f"        Feishu: code {check.feishu_code}, msg {check.feishu_msg!r}{http}")
        if check.status == "failed" and check.fix:
            print(f"        fix: {check.fix}")


async def run_doctor(*, connector_id: int | None, chat_id: str | None, as_json: bool = False) -> int:
    settings = Settings()
    settings.resolve_generated_secrets()
    try:
        connector = await _connector(settings, connector_id)
    except _NoConnector as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with httpx.AsyncClient() as http:
        checks = await diagnose_connector(
            http,
            settings=settings,
            secrets=SecretBox(settings.secrets_key),
            connector=connector,
            chat_id=chat_id,
        )
    failed = [c for c in checks if c.status == "failed"]
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, ensure_ascii=False))
    else:
        print(
            f"echocenter doctor — connector {connector.id} ({connector.connector_name}) "
            f"at {settings.feishu_base_url}"
        )
        _print(checks)
        print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return EXIT_FAILED if failed else 0
