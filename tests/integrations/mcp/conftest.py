"""Fixtures of the MCP adapter tests: a real `thoth serve` with the framework tests' policy plus
one MCP rule (`mail/delete` is blocked, `delete` elsewhere is not), and real MCP servers
(tests/integrations/mcp/mcp_test_server.py) over stdio and streamable HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import REVIEWER_ANSWERS, Governance
from ..thoth_server import POLICY, Reviewer, ThothServer, free_port

SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")
MCP_POLICY = POLICY.replace("rules:\n", """rules:
  - id: no-mail-delete
    when: {tool: mail/delete}
    action: block
    reason: mail is never deleted by agents
""", 1)


@pytest.fixture(scope="session")
def mcp_thoth() -> Iterator[tuple[ThothServer, Reviewer]]:
    with ThothServer(policy=MCP_POLICY) as server, Reviewer(server, REVIEWER_ANSWERS, interval=0.05) as reviewer:
        yield server, reviewer


@pytest.fixture
def governance(mcp_thoth: tuple[ThothServer, Reviewer]) -> Governance:
    return Governance(*mcp_thoth)


@pytest.fixture
def runlog(tmp_path: Path) -> Path:
    path = tmp_path / "ran.jsonl"
    path.touch()
    return path


@pytest.fixture
def http_mcp(runlog: Path) -> Iterator[Any]:
    """Start an MCP server over streamable HTTP: http_mcp(name) -> its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), name, "http", str(runlog), str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=0.5)
                return f"http://127.0.0.1:{port}/mcp"
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the MCP server {name} did not listen within 30 s")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
