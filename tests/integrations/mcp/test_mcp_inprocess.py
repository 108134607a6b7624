"""The governed session with the in-process engine and mcp's own in-memory transport (a real
MCPServer and the SDK's `Client`, no subprocess): MODIFY sends the policy's arguments, an mcp
`Client` is governed through thoth.instrument, and a tool error result is recorded as a failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.server.mcpserver import MCPServer

import thoth

POLICY = """\
version: 1
rules:
  - id: mask-secrets
    when: {tool: read, args: {path: {prefix: /secrets/}}}
    action: modify
    modify: {set: {path: /redacted}}
  - id: no-notes-delete
    when: {tool: notes/delete}
    action: block
    reason: notes stay
"""


def make_server(seen: list[tuple[str, dict[str, Any]]]) -> MCPServer:
    server = MCPServer("notes")

    @server.tool()
    async def read(path: str) -> str:
        seen.append(("read", {"path": path}))
        return f"contents of {path}"

    @server.tool()
    async def delete(item: str) -> str:
        seen.append(("delete", {"item": item}))
        return "deleted"

    @server.tool()
    async def broken(x: str) -> str:
        seen.append(("broken", {"x": x}))
        raise ValueError("disk on fire")

    return server


def test_modify_client_and_error_results(tmp_path: Path, monkeypatch: Any) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("THOTH_POLICY", str(policy))
    monkeypatch.setenv("THOTH_HOME", str(tmp_path))
    monkeypatch.setenv("THOTH_LOCAL_EVENTS", str(tmp_path / "events.jsonl"))
    seen: list[tuple[str, dict[str, Any]]] = []

    async def main() -> None:
        async with Client(make_server(seen)) as client:
            assert thoth.instrument(client, agent_id="a", approved_scope=[], tenant_id="t", api_url="local",
                                    enforcement="block", mcp_server="notes") is client
            masked = await client.call_tool("read", {"path": "/secrets/key"})
            assert not masked.is_error and "contents of /redacted" in masked.content[0].text
            assert (await client.call_tool("delete", {"item": "n1"})).is_error
            failed = await client.call_tool("broken", {"x": "1"})
            assert failed.is_error  # the server's error result comes back unchanged
            assert {t.name for t in (await client.list_tools()).tools} == {"read", "broken"}
            governor = client.session.__thoth_mcp__
            assert governor.server == "notes"

    asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == [("read", {"path": "/redacted"}), ("broken", {"x": "1"})]
    assert thoth.flush()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    posts = {e["metadata"]["tool_call"]["name"]: e["metadata"] for e in events if e["event_type"] == "TOOL_CALL_POST"}
    assert posts["broken"].get("error") is True and posts["broken"]["error_type"] == "McpToolError"
    assert "error" not in posts["read"] and posts["read"]["tool_call"]["mcp_server"] == "notes"
    assert posts["read"]["tool_call"]["arguments"] == {"path": "/redacted"}
