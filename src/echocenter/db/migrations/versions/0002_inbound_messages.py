"""Inbound messages: de-duplication per connector and per-sender rate limiting.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("sender_open_id", sa.String(64), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("connector_id", "message_id", name="uq_inbound_messages_connector_message"),
    )
    op.create_index(
        "ix_inbound_messages_rate", "inbound_messages", ["connector_id", "sender_open_id", "received_at"]
    )
    op.create_index("ix_inbound_messages_received_at", "inbound_messages", ["received_at"])


def downgrade() -> None:
    op.drop_table("inbound_messages")
