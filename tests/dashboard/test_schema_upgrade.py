"""The dashboard's schema step adds columns to a table created by an older version."""

from __future__ import annotations

from thoth.server.dashboard.schema import _columns, ensure_schema
from thoth.server.db import Database
from thoth.server.migrate import upgrade


def test_old_channels_table_gains_columns(server_db_url: str) -> None:
    upgrade(server_db_url)
    db = Database(server_db_url)
    try:
        with db.transaction() as conn:
            conn.execute("DROP TABLE IF EXISTS dashboard_channels")
            conn.execute("CREATE TABLE dashboard_channels (channel_id VARCHAR(64) PRIMARY KEY, tenant_id VARCHAR(200)"
                         " NOT NULL, kind VARCHAR(20) NOT NULL, target TEXT NOT NULL, created_at DOUBLE PRECISION"
                         " NOT NULL, created_by TEXT)")
            conn.execute("INSERT INTO dashboard_channels VALUES ('c1', 't', 'webhook', 'https://x', 1.0, 'me')")
        ensure_schema(db)
        ensure_schema(db)  # idempotent
        with db.read() as conn:
            assert {"options", "secrets"} <= _columns(conn, "dashboard_channels")
            assert conn.all("SELECT channel_id, options, secrets FROM dashboard_channels") == [("c1", None, None)]
    finally:
        db.close()
