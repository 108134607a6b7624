"""Apply Alembic migrations on start (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from thoth.server.db import DatabaseUnavailable, is_postgres, redact, sqlalchemy_url, sqlite_path

_SCRIPTS = Path(__file__).parent / "migrations"
# Any constant: several `thoth serve` processes starting together migrate one at a time.
_PG_LOCK_ID = 7_143_081


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to `revision` (the newest by default); tests upgrade from an older one."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    if not is_postgres(url):
        path = sqlite_path(url)
        if path not in ("", ":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if is_postgres(url):
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
            finally:
                if is_postgres(url):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
                    conn.commit()
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach database {redact(url)}: {exc.orig}") from exc
    finally:
        engine.dispose()
