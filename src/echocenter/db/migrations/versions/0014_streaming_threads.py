"""Streaming replies, threads and a sign of life: per-connector switches, one conversation per thread, and
the card entity each streamed reply uses (so a re-drive finds it instead of posting a second card).

Revision ID: 0014
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.add_column(sa.Column("streaming_replies", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("thinking_reaction", sa.String(32), nullable=False, server_default="OnIt"))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("thread_id", sa.String(64), nullable=False, server_default=""))
        batch.drop_constraint("uq_conversations_who_where", type_="unique")
        batch.create_unique_constraint(
            "uq_conversations_who_where_thread", ["connector_id", "chat_id", "open_id", "thread_id"]
        )
    op.create_table(
        "streamed_replies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("connector_id", "message_id", name="uq_streamed_replies_message"),
    )


def downgrade() -> None:
    op.drop_table("streamed_replies")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint("uq_conversations_who_where_thread", type_="unique")
        batch.create_unique_constraint("uq_conversations_who_where", ["connector_id", "chat_id", "open_id"])
        batch.drop_column("thread_id")
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.drop_column("thinking_reaction")
        batch.drop_column("streaming_replies")
