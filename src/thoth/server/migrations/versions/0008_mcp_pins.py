"""MCP tool pins: per tenant, MCP server and tool, the pinned and the current description and
input schema (thoth.server.mcp_pins, docs/mcp.md "Pinning tool descriptions").

Revision ID: 0008_mcp_pins
Revises: 0007_dashboard_tables

Hashes are SHA-256 hex of the description text and of the schema's canonical JSON; they decide
"changed", the text columns are for people (the dashboard shows pinned and current side by side).
"""

from alembic import op

revision = "0008_mcp_pins"
down_revision = "0007_dashboard_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE mcp_tools (
        tenant_id VARCHAR(200) NOT NULL,
        mcp_server VARCHAR(200) NOT NULL,
        tool_name VARCHAR(200) NOT NULL,
        pinned_description TEXT,
        pinned_description_hash VARCHAR(64),
        pinned_schema TEXT,
        pinned_schema_hash VARCHAR(64),
        pinned_at DOUBLE PRECISION,
        pinned_by TEXT,
        seen_description TEXT,
        seen_description_hash VARCHAR(64),
        seen_schema TEXT,
        seen_schema_hash VARCHAR(64),
        suspicion TEXT,
        first_seen_at DOUBLE PRECISION,
        last_seen_at DOUBLE PRECISION,
        changed_at DOUBLE PRECISION,
        PRIMARY KEY (tenant_id, mcp_server, tool_name)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mcp_tools")
