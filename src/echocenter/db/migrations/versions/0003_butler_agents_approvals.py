"""Agents, approvals and the Butler's conversations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("revoked_at", _ts, nullable=True),
        sa.Column("last_seen_at", _ts, nullable=True),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent_name", sa.String(64), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("requested_by_open_id", sa.String(64), nullable=False),
        sa.Column("requested_by_name", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("source_message_id", sa.String(64), nullable=False),
        sa.Column("card_message_id", sa.String(64), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("expires_at", _ts, nullable=False),
        sa.Column("decided_at", _ts, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("finished_at", _ts, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
    )
    op.create_index("ix_approvals_status_expires", "approvals", ["status", "expires_at"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("open_id", sa.String(64), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.UniqueConstraint("connector_id", "chat_id", "open_id", name="uq_conversations_who_where"),
    )
    op.create_table(
        "conversation_turns",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "conversation_id",
            sa.Integer,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
    )
    op.create_index(
        "ix_conversation_turns_conversation_id_id", "conversation_turns", ["conversation_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("conversation_turns")
    op.drop_table("conversations")
    op.drop_table("approvals")
    op.drop_table("agents")
