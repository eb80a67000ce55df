"""Several instances: who is alive, which instance holds which agent, connection state per instance, and
which instance an approved command was dispatched to.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("started_at", _ts, nullable=False),
        sa.Column("heartbeat_at", _ts, nullable=False),
    )
    op.create_table(
        "connector_instance_status",
        sa.Column(
            "connector_id",
            sa.Integer,
            sa.ForeignKey("feishu_connectors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", _ts, nullable=False),
    )
    op.create_table(
        "agent_presence",
        sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("connected_at", _ts, nullable=False),
        sa.Column("heartbeat_at", _ts, nullable=False),
    )
    op.create_index("ix_agent_presence_instance_id", "agent_presence", ["instance_id"])
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("dispatched_to", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("dispatched_to")
    op.drop_index("ix_agent_presence_instance_id", table_name="agent_presence")
    op.drop_table("agent_presence")
    op.drop_table("connector_instance_status")
    op.drop_table("instances")
