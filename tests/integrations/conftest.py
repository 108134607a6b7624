"""Fixtures for the framework tests: a governance server and a tracer talking HTTP to it.

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

from .governance_server import GovernanceServer
from .support import APPROVED, BLOCKED, DENIED, Ran, make_tracer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # examples/llm_stub.py: the OpenAI/Anthropic stand-in

# folder -> a distribution it needs
_NEEDS = {
    "langchain": "langchain",
    "langgraph": "langgraph",
    "openai": "openai",
    "openai_agents": "openai-agents",
    "anthropic": "anthropic",
    "claude_agent_sdk": "claude-agent-sdk",
    "crewai": "crewai",
    "autogen": "autogen",
    "autogen_agentchat": "autogen-agentchat",
}


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


collect_ignore = [folder for folder, dist in _NEEDS.items() if not _installed(dist)]


@pytest.fixture
def governance() -> Iterator[GovernanceServer]:
    with GovernanceServer(block={BLOCKED}, step_up={APPROVED: "ALLOW", DENIED: "BLOCK"}) as server:
        yield server


@pytest.fixture
def tracer(governance: GovernanceServer) -> Any:
    return make_tracer(governance)


@pytest.fixture
def ran() -> Ran:
    return Ran()
