"""Fixtures more than one folder uses; a conftest.py (or a test module) imports them by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .pg import pg_schema


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    with pg_schema("thoth_test") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'thoth.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: Any) -> Iterator[str | None]:
    """A fresh database per test module (the first start creates and prints the first admin):
    SQLite in the server's home, or a PostgreSQL schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    with pg_schema("thoth_dash") as url:
        yield url
