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
    return set(conn.dialect.columns(conn, table))
