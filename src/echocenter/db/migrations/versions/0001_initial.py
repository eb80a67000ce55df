"""Users, login throttling, Feishu connectors and integration logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
    )
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", _ts, nullable=False),
        sa.Column("locked_until", _ts, nullable=True),
    )
    op.create_table(
        "feishu_connectors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("connector_name", sa.String(100), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=True, unique=True),
        sa.Column("app_secret_enc", sa.Text, nullable=True),
        sa.Column("verification_token_enc", sa.Text, nullable=True),
        sa.Column("encrypt_key_enc", sa.Text, nullable=True),
        sa.Column("app_secret_hint", sa.String(8), nullable=True),
        sa.Column("verification_token_hint", sa.String(8), nullable=True),
        sa.Column("encrypt_key_hint", sa.String(8), nullable=True),
        sa.Column("allow_dm", sa.Boolean, nullable=False),
        sa.Column("allow_group_mention", sa.Boolean, nullable=False),
        sa.Column("mention_required", sa.Boolean, nullable=False),
        sa.Column("allowed_chat_ids", sa.JSON, nullable=False),
        sa.Column("user_whitelist", sa.JSON, nullable=False),
        sa.Column("approvers", sa.JSON, nullable=False),
        sa.Column("prefix_command", sa.String(32), nullable=False),
        sa.Column("ignore_bot_messages", sa.Boolean, nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("callback_verified", sa.Boolean, nullable=False),
        sa.Column("last_verified_at", _ts, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_event_at", _ts, nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
    )
    op.create_table(
        "integration_logs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
    )
    op.create_index("ix_integration_logs_connector_id_id", "integration_logs", ["connector_id", "id"])
    op.create_index("ix_integration_logs_created_at", "integration_logs", ["created_at"])


def downgrade() -> None:
    op.drop_table("integration_logs")
    op.drop_table("feishu_connectors")
    op.drop_table("login_attempts")
    op.drop_table("users")
