"""Migration 0008 (mcp_tools) on a database of today's release (at 0007, with rows): it upgrades,
keeps the rows, pins work afterwards, and it downgrades cleanly. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from tests.support.pg import pg_schema

from thoth.server import migrate
from thoth.server.db import Database, sqlalchemy_url
from thoth.server.mcp_pins import McpPins
from thoth.server.migrate import upgrade
from thoth.server.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: Any, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'thoth.db'}"
        return
    with pg_schema("thoth_mcp_mig") as url:
        yield url


def _version(db: Database) -> str:
    with db.read() as conn:
        return str(conn.one("SELECT version_num FROM alembic_version")[0])


def test_database_at_0007_upgrades_and_keeps_its_rows(fresh_url: str) -> None:
    upgrade(fresh_url, "0007_dashboard_tables")
    db = Database(fresh_url)
    try:
        store = Store(db)
        key = store.create_key("acme", "admin")
        store.add_policy_version("acme", "version: 1\n", "key:x")
        assert _version(db) == "0007_dashboard_tables"
        upgrade(fresh_url)
        assert _version(db) == "0008_mcp_pins"
        assert store.lookup_key(key["key"]) is not None
        assert store.active_policy("acme") is not None
        pins = McpPins(db)
        assert pins.observe("acme", "files", [{"name": "read", "description": "Read a file."}]) == {
            "read": ("new", "first seen: pinned as seen")}
        upgrade(fresh_url)  # idempotent
        db.close()
        cfg = Config()
        cfg.set_main_option("script_location", str(migrate._SCRIPTS))
        engine = sa.create_engine(sqlalchemy_url(fresh_url), poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007_dashboard_tables")
            conn.commit()
        engine.dispose()
        db = Database(fresh_url)
        assert _version(db) == "0007_dashboard_tables"
        with db.read() as conn:
            tables = {r[0] for r in conn.all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                if conn.postgres else "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "mcp_tools" not in tables and "api_keys" in tables
    finally:
        db.close()
