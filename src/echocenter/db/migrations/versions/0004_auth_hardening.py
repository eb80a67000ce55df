"""Auth hardening: token stamps, case-insensitive usernames, no id reuse on SQLite.

- ``users.token_stamp``: every JWT carries it; drawn anew to revoke a user's tokens (existing users get one,
  so tokens issued before this migration stop working and their users log in again).
- ``uq_users_username_lower``: ``Admin`` and ``admin`` are one username.
- SQLite: ``users``, ``agents`` and ``approvals`` become AUTOINCREMENT, so a deleted row's id never comes back
  for a new one (a token or URL naming the old id must not reach the new row). ``feishu_connectors`` and
  ``conversations`` are left as they are: other tables reference them with ON DELETE CASCADE, and SQLite's
  table rebuild would run those cascades.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NO_ID_REUSE_TABLES = ("agents", "approvals")


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("users", sa.Column("token_stamp", sa.String(32), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("token_stamp", sa.String))
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(sa.update(users).where(users.c.id == user_id).values(token_stamp=secrets.token_hex(16)))
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table(
        "users", recreate="always" if sqlite else "auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("token_stamp", existing_type=sa.String(32), nullable=False)
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    if sqlite:
        for table in _NO_ID_REUSE_TABLES:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_stamp")
