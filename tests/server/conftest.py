"""Real `thoth serve` processes on free ports, on SQLite and on the machine's PostgreSQL.

Every server-backed test runs twice (the `backend` fixture is parametrized); PostgreSQL runs use
a schema of their own, dropped at the end, and are skipped when no PostgreSQL answers.
The library code (Server, start_server, pg_schema, ...) lives in tests/support.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.fixtures import backend, pg_schema_url  # noqa: F401  (fixtures)
from tests.support.server import Server, start_server, stop_server

from thoth.server.migrate import upgrade


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    upgrade(backend)
    srv = start_server(backend, tmp_path_factory.mktemp("home"))
    yield srv
    stop_server(srv)
