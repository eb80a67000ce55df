"""Approvals a security team would sign off (issue 12): four-eyes, quorum, delivery and escalation settings
per connector; durable votes (one per approval and person); every copy of a card; the hash-chained timeline.

Revision ID: 0011
Revises: 0013
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.add_column(
            sa.Column("allow_self_approval", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("approvals_required", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("escalation_approvers", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("approval_delivery", sa.String(16), nullable=False, server_default="chat"))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("approvals_required", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "approval_votes",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "approval_id", sa.Integer, sa.ForeignKey("approvals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("voter_open_id", sa.String(128), nullable=False),
        sa.Column("voter_name", sa.String(128), nullable=False, server_default=""),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("approval_id", "voter_open_id", name="uq_approval_votes_voter"),
    )
    op.create_table(
        "approval_card_copies",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "approval_id", sa.Integer, sa.ForeignKey("approvals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", name="uq_approval_card_copies_message"),
    )
    op.create_index("ix_approval_card_copies_approval", "approval_card_copies", ["approval_id"])
    op.create_table(
        "approval_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("approval_id", sa.Integer, nullable=False),  # no FK: the trail outlives what it records
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False, server_default=""),
        sa.Column("actor_name", sa.String(128), nullable=False, server_default=""),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        # A hash precedes one row only: two appends racing for the same head cannot both land.
        sa.UniqueConstraint("prev_hash", name="uq_approval_events_prev_hash"),
    )
    op.create_index("ix_approval_events_approval", "approval_events", ["approval_id", "id"])
    op.create_index("ix_approval_events_created_at", "approval_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_approval_events_created_at", table_name="approval_events")
    op.drop_index("ix_approval_events_approval", table_name="approval_events")
    op.drop_table("approval_events")
    op.drop_index("ix_approval_card_copies_approval", table_name="approval_card_copies")
    op.drop_table("approval_card_copies")
    op.drop_table("approval_votes")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("escalated_at")
        batch.drop_column("reminded_at")
        batch.drop_column("approvals_required")
    with op.batch_alter_table("feishu_connectors") as batch:
        batch.drop_column("approval_delivery")
        batch.drop_column("escalation_approvers")
        batch.drop_column("approvals_required")
        batch.drop_column("allow_self_approval")
