"""Analytics state shared by server processes; an index to find the approval of one exact call.

Revision ID: 0003_hardening
Revises: 0001

A branch of its own (off 0001), so it merges with other branches' migrations; the server
upgrades to "heads".
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_hardening"
down_revision = "0002_approval_loop"
branch_labels = ("hardening",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analytics_state",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("state_key", sa.String(300), primary_key=True),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    # A re-check of a held call finds its approval by session and arguments digest.
    op.create_index("ix_approvals_call", "approvals", ["tenant_id", "session_id", "args_digest"])


def downgrade() -> None:
    op.drop_index("ix_approvals_call", "approvals")
    op.drop_table("analytics_state")
