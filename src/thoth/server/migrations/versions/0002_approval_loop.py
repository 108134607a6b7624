"""Approval loop: requester and two-person fields on approvals, reviews, notifications, replay nonces.

Revision ID: 0002_approval_loop
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_approval_loop"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("user_id", sa.Text))
        # key_id of the API key that made the held call: that key may never approve it.
        batch.add_column(sa.Column("requested_by", sa.Text))
        batch.add_column(sa.Column("required_approvals", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "approval_reviews",
        sa.Column("approval_id", sa.String(64), primary_key=True),
        sa.Column("reviewer", sa.String(300), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("via", sa.String(40)),
        sa.Column("reviewed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("approval_id", sa.String(64), nullable=False, index=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        # queued -> sent | failed; outcome_status records the "resolved" follow-up message.
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("target", sa.Text),
        sa.Column("outcome_status", sa.String(16)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_notifications_outcome", "notifications", ["status", "outcome_status"])
    op.create_table(
        "notify_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("notify_nonces", "notifications", "approval_reviews"):
        op.drop_table(table)
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("required_approvals")
        batch.drop_column("requested_by")
        batch.drop_column("user_id")
