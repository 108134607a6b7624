"""Fixtures for the framework tests: a real `thoth serve` (one per test run, a fresh agent id
per test), a reviewer resolving step-ups through the approvals API, and a tracer talking HTTP
to the server.

Each framework folder runs only where that framework is installed (its nox session); in the
core test environment the folders are skipped, never imported.

`governance` is the one place that decides which server the tests talk to.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from thoth.integrations.registry import INTEGRATIONS

from .support import REVIEWER_ANSWERS, Governance, Ran, make_tracer
from .thoth_server import Reviewer, ThothServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # examples/llm_stub.py: the OpenAI/Anthropic stand-in

def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# each framework's folder (tests/integrations/<name>/) runs where its distribution is installed
collect_ignore = [i.name for i in INTEGRATIONS if not _installed(i.dist)]


@pytest.fixture(scope="session")
def thoth_server() -> Iterator[tuple[ThothServer, Reviewer]]:
    with ThothServer() as server, Reviewer(server, REVIEWER_ANSWERS, interval=0.05) as reviewer:
        yield server, reviewer


@pytest.fixture
def governance(thoth_server: tuple[ThothServer, Reviewer]) -> Governance:
    return Governance(*thoth_server)


@pytest.fixture
def tracer(governance: Governance) -> Any:
    return make_tracer(governance)


@pytest.fixture
def ran() -> Ran:
    return Ran()
