"""An approval allows a counted number of uses within a window (docs/approvals.md, "Uses").

Revision ID: 0005_approval_uses
Revises: 0004_lean_decision_indexes

Before this revision an approved hold allowed its call without limit. Approvals already
approved when the upgrade runs are marked spent and their window closed, so none of them can
be replayed afterwards; pending ones get the defaults (one use, a 600-second window).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_approval_uses"
down_revision = "0004_lean_decision_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("uses", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("allowed_uses", sa.Integer, nullable=False, server_default="1"))
        # Seconds the approval stays usable after it is approved (the policy's, at hold time).
        batch.add_column(sa.Column("valid_seconds", sa.Float, nullable=False, server_default="600"))
        batch.add_column(sa.Column("valid_until", sa.Float))  # set when approved
        # When the hold token's own use (the held call) was taken; NULL while it is unused.
        batch.add_column(sa.Column("token_used_at", sa.Float))
    op.execute("UPDATE approvals SET uses = allowed_uses, valid_until = COALESCE(resolved_at, requested_at),"
               " token_used_at = COALESCE(resolved_at, requested_at) WHERE status = 'approved'")


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        for name in ("token_used_at", "valid_until", "valid_seconds", "allowed_uses", "uses"):
            batch.drop_column(name)
