"""The Butler's agent loop: a request the LLM brain is working on (a durable continuation, re-driven like the
inbox), the tool calls of each model turn, and tool calls and results kept in the conversation.

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "butler_loops",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "conversation_id",
            sa.Integer,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("source_message_id", sa.String(64), nullable=False),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("model_turns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deadline", _ts, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _ts, nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("finished_at", _ts, nullable=True),
        sa.UniqueConstraint("connector_id", "source_message_id", name="uq_butler_loops_message"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_butler_loops_status_lease", "butler_loops", ["status", "lease_until"])
    op.create_table(
        "butler_tool_calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "loop_id", sa.Integer, sa.ForeignKey("butler_loops.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("model_turn", sa.Integer, nullable=False),
        sa.Column("call_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arguments", sa.JSON, nullable=False),
        sa.Column("approval_id", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.UniqueConstraint("loop_id", "model_turn", "call_id", name="uq_butler_tool_calls_call"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_butler_tool_calls_approval_id", "butler_tool_calls", ["approval_id"])
    with op.batch_alter_table("conversation_turns") as batch:
        batch.add_column(sa.Column("tool_calls", sa.JSON, nullable=True))
        batch.add_column(sa.Column("tool_call_id", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversation_turns") as batch:
        batch.drop_column("tool_call_id")
        batch.drop_column("tool_calls")
    op.drop_index("ix_butler_tool_calls_approval_id", table_name="butler_tool_calls")
    op.drop_table("butler_tool_calls")
    op.drop_index("ix_butler_loops_status_lease", table_name="butler_loops")
    op.drop_table("butler_loops")
