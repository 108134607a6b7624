"""The machine's PostgreSQL for tests: a schema of a test's own, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("THOTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh PostgreSQL schema, dropped afterwards
    (skips the test when PostgreSQL is not reachable)."""
    if not pg_available():
        pytest.skip("PostgreSQL not reachable at " + PG_URL)
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def terminate_writer(pid: int) -> list[tuple[bool]]:
    """Terminate the backend of the writer of server process `pid`, once it has connected (the
    first write-behind commit opens it, shortly after the first answer)."""
    import psycopg

    deadline = time.monotonic() + 10
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        while True:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                   " WHERE application_name = %s", (f"thoth-writer-{pid}",)).fetchall()
            if killed or time.monotonic() > deadline:
                return killed
            time.sleep(0.05)
