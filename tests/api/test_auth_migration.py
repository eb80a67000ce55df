"""Migration 0004 on a database that already has users, agents and approvals (both databases)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, text

from echocenter.db.engine import make_engine
from echocenter.db.migrate import alembic_config, upgrade_to_head
from tests.support.databases import Database


def _upgrade_to(revision: str) -> object:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


async def test_existing_rows_survive_and_get_token_stamps_and_ids_are_not_reused(database: Database) -> None:
    engine = make_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to("0003"))  # type: ignore[arg-type]
            for name in ("admin", "alice", "bob"):
                await connection.execute(
                    text(
                        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
                        "VALUES (:name, 'x', 'ADMIN', true, CURRENT_TIMESTAMP)"
                    ),
                    {"name": name},
                )
            await connection.execute(
                text(
                    "INSERT INTO agents (name, token_hash, created_at) VALUES ('a1', 'h1', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade_to_head(engine)
        async with engine.begin() as connection:
            rows = (await connection.execute(text("SELECT id, username, token_stamp FROM users"))).all()
            assert sorted((row[0], row[1]) for row in rows) == [(1, "admin"), (2, "alice"), (3, "bob")]
            stamps = {row[2] for row in rows}
            assert len(stamps) == 3 and all(stamp and len(stamp) == 32 for stamp in stamps)
            await connection.execute(text("DELETE FROM users WHERE id = 3"))
            await connection.execute(text("DELETE FROM agents WHERE id = 1"))
            await connection.execute(
                text(
                    "INSERT INTO users (username, password_hash, role, is_active, created_at, token_stamp) "
                    "VALUES ('carol', 'x', 'MEMBER', true, CURRENT_TIMESTAMP, 's')"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO agents (name, token_hash, created_at) VALUES ('a2', 'h2', CURRENT_TIMESTAMP)"
                )
            )
            carol = (await connection.execute(text("SELECT id FROM users WHERE username = 'carol'"))).scalar()
            agent = (await connection.execute(text("SELECT id FROM agents WHERE name = 'a2'"))).scalar()
            assert carol == 4 and agent == 2  # the deleted newest ids (3 and 1) do not come back
            unique = await connection.execute(
                text("SELECT count(*) FROM users WHERE lower(username) = 'alice'")
            )
            assert unique.scalar() == 1
    finally:
        await engine.dispose()
