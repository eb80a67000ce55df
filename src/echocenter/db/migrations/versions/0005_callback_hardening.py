"""Callback hardening: a connector opts in to the HTTP callback, and signed callbacks are remembered so a
replay within the timestamp window is refused on every instance.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.add_column(sa.Column("callback_enabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "callback_replays",
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("signature", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_callback_replays_seen_at", "callback_replays", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_callback_replays_seen_at", table_name="callback_replays")
    op.drop_table("callback_replays")
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.drop_column("callback_enabled")
