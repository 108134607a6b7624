"""The dashboard's tables and the read indexes its pages need on the server's tables.

They are part of the server's one Alembic chain (migrations/versions/0007_dashboard_tables.py),
applied by thoth.server.migrate when the server starts, like every other table: there is no
second schema system. `ensure_schema` is kept for callers holding only a Database.
"""

from __future__ import annotations

from typing import Any


def ensure_schema(db: Any) -> None:
    """Bring the database to the newest schema, dashboard tables included (idempotent)."""
    from thoth.server.migrate import upgrade

    upgrade(db.url)


def _columns(conn: Any, table: str) -> set[str]:
    if conn.postgres:
        rows = conn.all("SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = ?", (table,))
        return {r[0] for r in rows}
    return {r[1] for r in conn.all(f"PRAGMA table_info({table})")}
