"""`thoth mcp proxy` end to end: an MCP client talks to a local MCP server through the proxy, and
Thoth checks every tool call before it reaches the server.

    pip install -e '.[policy,mcp]'
    python examples/mcp_proxy_example.py

No server to run: the proxy decides in-process (THOTH_API_URL=local) with the policy below. To
have a running `thoth serve` decide (approvals, dashboard, audit chain), set THOTH_API_URL and
THOTH_API_KEY instead. The same file is the MCP server when run as `... mcp_proxy_example.py server`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

POLICY = """
version: 1
rules:
  - id: no-secrets
    when: {tool: read_note, any_arg: {contains: secret}}
    action: block
    reason: secret notes stay private
"""


def run_server() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("notes")

    @server.tool()
    def read_note(name: str) -> str:
        """Read a note by name."""
        return f"note {name}: buy milk"

    server.run()  # stdio


async def run_client() -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as policy:
        policy.write(POLICY)
    env = {**os.environ, "THOTH_API_URL": os.environ.get("THOTH_API_URL", "local"), "THOTH_POLICY": policy.name}
    # What a desktop client's configuration says: the proxy as the command, the server after "--".
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "thoth", "mcp", "proxy", "--agent-id", "notes-agent", "--tenant-id", "demo",
              "--enforcement", "block", "--", sys.executable, os.path.abspath(__file__), "server"],
        env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        print("tools:", [t.name for t in (await session.list_tools()).tools])
        for name in ("groceries", "secret-plans"):
            result = await session.call_tool("read_note", {"name": name})
            text = " ".join(getattr(c, "text", "") for c in result.content)
            print(f"read_note({name!r}) -> {'BLOCKED: ' if result.is_error else ''}{text}")
    os.unlink(policy.name)


if __name__ == "__main__":
    if sys.argv[1:] == ["server"]:
        run_server()
    else:
        asyncio.run(run_client())
