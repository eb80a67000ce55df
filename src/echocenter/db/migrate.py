"""Apply Alembic migrations from inside the service (on start) or the CLI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant will do: it only has to be the same for every EchoCenter instance sharing a database.
_PG_MIGRATION_LOCK = 0x4563686F


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several instances may start together; one migrates, the others wait and find nothing to do.
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
                await connection.commit()
