"""Fixtures for running a published Thoth client against our server.

These tests only make sense in an environment where `thoth` is a published client
(aten-thoth 0.1.15 or atensec-thoth 0.5.25), which the nox sessions in
noxfile_conformance.py build. Anywhere else (our own test run, where `thoth` is our
package) they are not collected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
from thoth_server import RunningServer, ServerInfo, start_server

PUBLISHED_CLIENTS = {"aten-thoth": "0.1.15", "atensec-thoth": "0.5.25"}


def installed_published_client() -> str | None:
    for dist, version in PUBLISHED_CLIENTS.items():
        try:
            if metadata.version(dist) == version:
                return dist
        except metadata.PackageNotFoundError:
            continue
    return None


PUBLISHED_CLIENT = installed_published_client()
collect_ignore_glob = [] if PUBLISHED_CLIENT else ["test_*.py"]


@pytest.fixture(scope="session")
def server() -> Iterator[ServerInfo]:
    """The server under test: given by THOTH_CONFORMANCE_* or started from THOTH_SERVER_PYTHON."""
    given = ServerInfo.from_env()
    if given is not None:
        yield given
        return
    python = os.environ.get("THOTH_SERVER_PYTHON")
    if not python:
        pytest.fail(
            "no server to test: set THOTH_CONFORMANCE_URL, _TENANT, _SDK_KEY and _APPROVER_KEY, "
            "or THOTH_SERVER_PYTHON (a Python that can import thoth.server), or run "
            "`nox -f noxfile_conformance.py`"
        )
    running: RunningServer = start_server(python)
    try:
        yield running.info
    finally:
        running.stop()


@pytest.fixture
def client_settings(server: ServerInfo, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Keyword arguments every instrument*() call gets; the clients' env overrides are cleared."""
    monkeypatch.setenv("THOTH_API_URL", server.url)  # the clients prefer this over api_url
    for name in ("THOTH_API_KEY", "THOTH_EVENT_INGEST_TOKEN", "THOTH_ENVIRONMENT", "THOTH_FAIL_OPEN"):
        monkeypatch.delenv(name, raising=False)
    return {"tenant_id": server.tenant, "api_key": server.sdk_key, "api_url": server.url}
