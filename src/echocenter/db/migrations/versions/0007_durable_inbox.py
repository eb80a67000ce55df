"""A durable inbox: each claimed message keeps what is needed to answer it, its state and a lease; an atomic
per-sender rate counter; idempotent conversation turns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("payload", sa.JSON, nullable=True))  # the message as the Butler gets it
        batch.add_column(sa.Column("reason", sa.String(200), nullable=True))  # why filtered / failed
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(40), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    # The re-drive sweep looks for unfinished messages whose lease ran out.
    op.create_index("ix_inbound_messages_unfinished", "inbound_messages", ["status", "lease_until"])
    op.create_table(
        "inbound_rate_windows",
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sender_open_id", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("conversation_turns") as batch:
        batch.add_column(sa.Column("turn_key", sa.String(100), nullable=True))
    op.create_index(
        "uq_conversation_turns_key", "conversation_turns", ["conversation_id", "turn_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_conversation_turns_key", table_name="conversation_turns")
    with op.batch_alter_table("conversation_turns") as batch:
        batch.drop_column("turn_key")
    op.drop_table("inbound_rate_windows")
    op.drop_index("ix_inbound_messages_unfinished", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        for column in ("finished_at", "lease_until", "lease_owner", "attempts", "reason", "payload"):
            batch.drop_column(column)
