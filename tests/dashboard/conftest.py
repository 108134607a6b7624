"""A real `thoth serve` process per test module (tests/support/dashboard.py starts it), on SQLite
and on a PostgreSQL schema of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.dashboard import Server, start, stop
from tests.support.fixtures import database_url  # noqa: F401  (a fixture)


@pytest.fixture
def server_db_url(database_url: str | None, tmp_path: Path) -> str:  # noqa: F811
    """A database URL without a server: the module's PostgreSQL schema, or a fresh SQLite file."""
    return database_url or f"sqlite:///{tmp_path / 'thoth.db'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Server]:  # noqa: F811
    s = start(tmp_path_factory.mktemp("thoth-home"), {"THOTH_HOLD_TIMEOUT_SECONDS": "120"}, database_url)
    yield s
    stop(s)
