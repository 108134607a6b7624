"""Fixtures of the chaos suite; the table of figures (report.py) is printed in pytest's terminal
summary (no `-s` needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.server import pg_schema

from .harness import Cluster, cluster_tools
from .report import Report, print_table


@pytest.fixture(scope="session")
def report() -> Report:
    return Report()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_table(terminalreporter)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend name, database URL): a fresh SQLite file, or a fresh schema of the shared PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'thoth.db'}"
    else:
        with pg_schema("thoth_chaos") as url:
            yield "postgres", url


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this module's own, on a free port, that tests may stop and start."""
    if os.geteuid() != 0 or not cluster_tools():
        pytest.skip("needs root and Debian's pg_createcluster / pg_ctlcluster to run a private PostgreSQL")
    made = Cluster()
    try:
        made.create()
    except Exception as exc:  # noqa: BLE001 - a machine that cannot make one skips, with the reason
        made.drop()
        pytest.skip(f"could not create a private PostgreSQL cluster: {exc}")
    yield made
    made.drop()


@pytest.fixture(autouse=True, scope="session")
def quiet_sdk() -> Iterator[None]:
    """Thousands of fail-opens log a WARNING each; the table counts them instead."""
    import logging

    logger = logging.getLogger("thoth")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
