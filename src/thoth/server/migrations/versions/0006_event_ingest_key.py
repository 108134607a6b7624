"""Events record the API key that sent them.

Revision ID: 0006_event_ingest_key
Revises: 0005_approval_uses

`ingest_key_id` is the key's id (never its secret), set by the server; NULL for the server's
own records and for events stored before this revision. The audit chain covers it: see
thoth.server.audit (rows without one hash as before, so existing chains still verify). No index:
every event insert would pay for it, and looking events up by key is an audit-time query.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_event_ingest_key"
down_revision = "0005_approval_uses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("ingest_key_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:  # SQLite drops a column by a table rebuild
        batch.drop_column("ingest_key_id")
