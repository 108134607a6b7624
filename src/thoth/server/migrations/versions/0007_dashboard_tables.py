"""The dashboard's tables and read indexes join the Alembic chain.

Revision ID: 0007_dashboard_tables
Revises: 0006_event_ingest_key

Until this revision the dashboard created them itself with IF NOT EXISTS DDL on every start
(thoth.server.dashboard.schema). A database made then already holds some or all of them, so
every statement here tolerates what exists: CREATE ... IF NOT EXISTS (SQLite and PostgreSQL
both accept it), and the two later columns of dashboard_channels are added only when missing.
Several processes starting at once are serialised by thoth.server.migrate's advisory lock on
PostgreSQL. The DDL is written out here, not imported: a migration stays what it was.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_dashboard_tables"
down_revision = "0006_event_ingest_key"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS dashboard_users (
        username VARCHAR(100) PRIMARY KEY,
        tenant_id VARCHAR(200) NOT NULL,
        role VARCHAR(20) NOT NULL,
        password_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        disabled_at DOUBLE PRECISION
    )""",
    # A browser login: the cookie holds a random token; only its SHA-256 is stored, so a
    # leaked database does not hand out live sessions. Rows are deleted on logout.
    """CREATE TABLE IF NOT EXISTS dashboard_logins (
        token_hash VARCHAR(64) PRIMARY KEY,
        username VARCHAR(100) NOT NULL,
        csrf_token VARCHAR(64) NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS dashboard_channels (
        channel_id VARCHAR(64) PRIMARY KEY,
        tenant_id VARCHAR(200) NOT NULL,
        kind VARCHAR(20) NOT NULL,
        target TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        created_by TEXT,
        options TEXT,
        secrets TEXT
    )""",
    # Decision counts of closed hours (dashboard/rollups.py): one row per tenant and hour, the
    # stats as JSON because only the dashboard reads them back, whole.
    """CREATE TABLE IF NOT EXISTS dashboard_rollups (
        tenant_id VARCHAR(200) NOT NULL,
        hour INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        stats TEXT NOT NULL,
        counted_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, hour)
    )""",
    # Login throttle (dashboard/throttle.py): consecutive failed sign-ins and the lockout, per
    # user name, per client address and per known device, in the database so every server
    # process counts the same attempts. Reset by a success or an hour without failures.
    """CREATE TABLE IF NOT EXISTS dashboard_login_throttle (
        scope VARCHAR(10) NOT NULL,
        subject VARCHAR(200) NOT NULL,
        failures INTEGER NOT NULL,
        last_failed_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, subject)
    )""",
    # Every password check of the login form: who, from where, when, and whether it matched.
    # Kept 30 days. Refusals during a lockout check no password and are not stored one by one.
    """CREATE TABLE IF NOT EXISTS dashboard_login_attempts (
        attempted_at DOUBLE PRECISION NOT NULL,
        username VARCHAR(200) NOT NULL,
        client VARCHAR(100) NOT NULL,
        ok INTEGER NOT NULL,
        known_device INTEGER NOT NULL
    )""",
    # Browsers that signed in as a user before (a cookie whose SHA-256 is stored): their
    # attempts for that user are counted on their own, so strangers' failures cannot lock the
    # user out of a browser they already use.
    """CREATE TABLE IF NOT EXISTS dashboard_devices (
        token_hash VARCHAR(64) PRIMARY KEY,
        username VARCHAR(100) NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
)

# Columns added to dashboard_channels after it first shipped: routing (agent, rule) and
# secrets of a channel (thoth.server.notify.tenant_channels).
_COLUMNS = (("dashboard_channels", "options", "TEXT"), ("dashboard_channels", "secrets", "TEXT"))

# Read paths of the pages (see docs/dashboard.md, "Indexes"). The server's own indexes cover
# sessions by recency, events by session and decisions by session.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_dash_decisions_time ON decisions (tenant_id, decided_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_violations_time ON decisions (tenant_id, decided_at)"
    " WHERE violation_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_dash_sessions_agent ON sessions (tenant_id, agent_id, last_event_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_sessions_user ON sessions (tenant_id, user_id, last_event_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_approvals_session ON approvals (tenant_id, session_id)",
    "CREATE INDEX IF NOT EXISTS ix_dash_approvals_resolved ON approvals (tenant_id, resolved_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_logins_expiry ON dashboard_logins (expires_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_attempts_time ON dashboard_login_attempts (attempted_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_attempts_user ON dashboard_login_attempts (username, attempted_at)",
    "CREATE INDEX IF NOT EXISTS ix_dash_devices_user ON dashboard_devices (username, created_at)",
)

_DROP_ORDER = ("dashboard_devices", "dashboard_login_attempts", "dashboard_login_throttle", "dashboard_rollups",
               "dashboard_channels", "dashboard_logins", "dashboard_users")


def upgrade() -> None:
    for statement in _TABLES + _INDEXES:
        op.execute(statement)
    inspector = sa.inspect(op.get_bind())
    for table, column, kind in _COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def downgrade() -> None:
    for statement in _INDEXES:
        op.execute("DROP INDEX IF EXISTS " + statement.split(" IF NOT EXISTS ")[1].split(" ")[0])
    for table in _DROP_ORDER:
        op.execute(f"DROP TABLE IF EXISTS {table}")
