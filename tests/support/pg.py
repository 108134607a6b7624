"""The machine's PostgreSQL for tests: a schema of a test's own, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
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
