"""Initial schema: tenants, keys, policies, decisions, approvals, sessions, events, chain heads.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False, index=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "policies",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("comment", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("tool_name", sa.Text, nullable=False),
        sa.Column("tool_args", sa.Text),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("would_decision", sa.String(16)),
        sa.Column("reason", sa.Text),
        sa.Column("reason_code", sa.Text),
        sa.Column("matched_rule_ids", sa.Text),
        sa.Column("risk_score", sa.Float),
        sa.Column("violation_id", sa.String(64)),
        sa.Column("hold_token", sa.String(80)),
        sa.Column("enforcement_mode", sa.String(20)),
        sa.Column("environment", sa.Text),
        sa.Column("dedup_key", sa.Text),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.UniqueConstraint("tenant_id", "session_id", "dedup_key", name="uq_decisions_dedup"),
    )
    op.create_index("ix_decisions_session", "decisions", ["tenant_id", "session_id", "decided_at"])
    op.create_index("ix_decisions_violation", "decisions", ["tenant_id", "violation_id"])
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("hold_token", sa.String(80), nullable=False, unique=True),
        sa.Column("violation_id", sa.String(64)),
        sa.Column("decision_id", sa.String(64)),
        sa.Column("tool_name", sa.Text, nullable=False),
        sa.Column("tool_args", sa.Text),
        sa.Column("args_digest", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_by", sa.Text),
        sa.Column("resolution_reason", sa.Text),
        sa.Column("resolved_at", sa.Float),
    )
    op.create_index("ix_approvals_status", "approvals", ["tenant_id", "status", "requested_at"])
    op.create_table(
        "sessions",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("session_id", sa.String(200), primary_key=True),
        sa.Column("agent_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("last_event_at", sa.Float, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("blocked", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stepped_up", sa.Integer, nullable=False, server_default="0"),
        sa.Column("risk_score", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_sessions_recent", "sessions", ["tenant_id", "last_event_at"])
    op.create_table(
        "events",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("chain_index", sa.BigInteger, primary_key=True),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("session_id", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("tool_name", sa.Text),
        sa.Column("occurred_at", sa.Text),
        sa.Column("ingested_at", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_session", "events", ["tenant_id", "session_id", "chain_index"])
    op.create_table(
        "chain_heads",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("chain_index", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text),
        sa.Column("public_key", sa.Text),
        sa.Column("signed_at", sa.Float),
    )


def downgrade() -> None:
    for table in ("chain_heads", "events", "sessions", "approvals", "decisions", "policies", "api_keys", "tenants"):
        op.drop_table(table)
