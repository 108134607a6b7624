"""The dashboard's tables are in the server's Alembic chain (0007): databases made before, with
the tables the dashboard used to create itself, upgrade cleanly and keep their rows."""

from __future__ import annotations

import importlib
import threading

from thoth.server.dashboard.schema import _columns, ensure_schema
from thoth.server.db import Database
from thoth.server.migrate import upgrade

DASHBOARD_TABLES = {"dashboard_users", "dashboard_logins", "dashboard_channels", "dashboard_rollups",
                    "dashboard_login_throttle", "dashboard_login_attempts", "dashboard_devices"}
# The DDL the dashboard ran on every start before 0007 (the migration holds it verbatim).
_before = importlib.import_module("thoth.server.migrations.versions.0007_dashboard_tables")


def _head() -> str:
    """The newest revision of the chain (later revisions than 0007 run too)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from thoth.server import migrate

    cfg = Config()
    cfg.set_main_option("script_location", str(migrate._SCRIPTS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


HEAD = _head()


def _version(db: Database) -> str:
    with db.read() as conn:
        return str(conn.one("SELECT version_num FROM alembic_version")[0])


def _tables(db: Database) -> set[str]:
    with db.read() as conn:
        if conn.postgres:
            rows = conn.all("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        else:
            rows = conn.all("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def _indexes(db: Database) -> set[str]:
    with db.read() as conn:
        if conn.postgres:
            rows = conn.all("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        else:
            rows = conn.all("SELECT name FROM sqlite_master WHERE type = 'index'")
    return {r[0] for r in rows}


def _reset(db: Database) -> None:
    """Back to a server schema at 0006 with no dashboard tables (the fixture's database is shared)."""
    with db.transaction() as conn:
        for table in _before._DROP_ORDER:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in _before._INDEXES:
            conn.execute("DROP INDEX IF EXISTS " + statement.split(" IF NOT EXISTS ")[1].split(" ")[0])
        conn.execute("UPDATE alembic_version SET version_num = '0006_event_ingest_key'")


def test_old_channels_table_gains_columns(server_db_url: str) -> None:
    upgrade(server_db_url)
    db = Database(server_db_url)
    try:
        _reset(db)
        with db.transaction() as conn:
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


def test_database_of_the_previous_release_upgrades(server_db_url: str) -> None:
    """Server at 0006 and every IF-NOT-EXISTS table and index of the old dashboard present, with rows."""
    upgrade(server_db_url)
    db = Database(server_db_url)
    try:
        _reset(db)
        with db.transaction() as conn:
            for statement in _before._TABLES + _before._INDEXES:
                conn.execute(statement)
            conn.execute("INSERT INTO dashboard_users VALUES ('ann', 't', 'admin', 'h', 1.0, NULL)")
            conn.execute("INSERT INTO dashboard_login_throttle VALUES ('user', 'ann', 3, 2.0, 0.0)")
        assert _version(db) == "0006_event_ingest_key"
        upgrade(server_db_url)
        assert _version(db) == HEAD
        assert _tables(db) >= DASHBOARD_TABLES
        assert {"ix_dash_violations_time", "ix_dash_devices_user"} <= _indexes(db)
        with db.read() as conn:
            assert conn.all("SELECT username, role FROM dashboard_users") == [("ann", "admin")]
            assert conn.all("SELECT failures FROM dashboard_login_throttle") == [(3,)]
    finally:
        db.close()


def test_fresh_upgrade_creates_the_dashboard_tables(server_db_url: str) -> None:
    upgrade(server_db_url)
    db = Database(server_db_url)
    try:
        _reset(db)
        assert not DASHBOARD_TABLES & _tables(db)
        upgrade(server_db_url)
        assert _tables(db) >= DASHBOARD_TABLES
        assert {"ix_dash_decisions_time", "ix_dash_attempts_user"} <= _indexes(db)
        with db.read() as conn:
            assert {"options", "secrets"} <= _columns(conn, "dashboard_channels")
    finally:
        db.close()


def test_processes_starting_together_upgrade_once(server_db_url: str) -> None:
    """Four upgrades at once from 0006 with the old tables present (several `thoth serve` starting)."""
    upgrade(server_db_url)
    db = Database(server_db_url)
    try:
        _reset(db)
        with db.transaction() as conn:
            for statement in _before._TABLES:
                conn.execute(statement)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                upgrade(server_db_url)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4 if db.url.startswith("postgres") else 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert _version(db) == HEAD
        assert _tables(db) >= DASHBOARD_TABLES
    finally:
        db.close()
