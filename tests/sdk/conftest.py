"""Fixtures: the real `thoth serve` (end-to-end tests) and a scriptable wire-contract server
(failure injection the real server cannot produce), each on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.fixtures import pg_schema_url  # noqa: F401  (a fixture: a PostgreSQL schema of our own)

from thoth.http import release
from thoth.instrumentor import build_tracer
from thoth.tracer import Tracer

from .real_server import Server, Tenant, launch, stop_server
from .wire_server import WireServer


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("THOTH_API_URL", "THOTH_API_KEY", "THOTH_FAIL_CLOSED", "THOTH_CLIENT_CERT", "THOTH_CLIENT_KEY",
                 "THOTH_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def thoth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `thoth serve` on SQLite for the SDK suite; each test gets its own tenant."""
    home = tmp_path_factory.mktemp("thoth-home")
    server = launch(f"sqlite:///{home / 'thoth.db'}", home)
    yield server
    stop_server(server)


@pytest.fixture
def real(thoth_server: Server) -> Iterator[Tenant]:
    tenant = Tenant(thoth_server)
    yield tenant
    release(thoth_server.url)  # drain and forget this test's event queue and connections


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Server]]:
    """A real server of the test's own (to stop and restart), on SQLite and on the machine's
    PostgreSQL (a schema of its own; skipped without PostgreSQL); the list holds the live process."""
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'thoth.db'}"
    else:
        db_url = request.getfixturevalue("pg_schema_url")
    holder = [launch(db_url, tmp_path)]
    yield holder
    release(holder[0].url)
    stop_server(holder[0])


@pytest.fixture
def server() -> Iterator[WireServer]:
    wire = WireServer().start()
    yield wire
    if not wire.running:
        wire.start()  # let what the test left queued drain, so no retries outlive the test
    release(wire.url)
    wire.stop()


@pytest.fixture
def make_tracer(server: WireServer) -> Callable[..., Tracer]:
    def make(**settings: Any) -> Tracer:
        options: dict[str, Any] = {
            "agent_id": "test-agent", "approved_scope": ["read_file", "search"],
            "tenant_id": server.tenant_id, "api_key": server.api_key, "api_url": server.url,
            "enforcement": "block", "step_up_poll_interval_seconds": 0.05,
        }
        options.update(settings)
        return build_tracer(**options)

    return make


@pytest.fixture(params=["own", "proxy"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which client carries the SDK's requests (tests/sdk/routes.py); no proxy from the machine's environment."""
    from .routes import PROXY_VARIABLES

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return str(request.param)
