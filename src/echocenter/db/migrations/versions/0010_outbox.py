"""Durable outbox: every reply, card and card update is a row before it is sent (feishu/outbox.py), and the
shared pacing state that keeps several instances within Feishu's send quotas together.

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("lane", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("target_message_id", sa.String(128), nullable=False),
        sa.Column("msg_type", sa.String(16), nullable=False),
        sa.Column("receive_id_type", sa.String(16), nullable=False, server_default="chat_id"),
        sa.Column("reply_in_thread", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("uuid", sa.String(50), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _UTC, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _UTC, nullable=True),
        sa.Column("sent_message_id", sa.String(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("sent_at", _UTC, nullable=True),
        sa.UniqueConstraint("connector_id", "uuid", name="uq_outbox_messages_uuid"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_messages_pending", "outbox_messages", ["status", "connector_id", "lane", "id"])
    op.create_table(
        "outbox_pacing",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_pacing")
    op.drop_index("ix_outbox_messages_pending", table_name="outbox_messages")
    op.drop_table("outbox_messages")
