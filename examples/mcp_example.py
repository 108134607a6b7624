"""Govern the tools of an MCP server with Thoth, from the official MCP Python SDK (`mcp`).

The script starts its own local MCP server (this file, run with `--server`, over stdio), opens
an `mcp.ClientSession` to it, governs the session, and calls tools as an agent loop would:

- `search_docs` is allowed and runs;
- `delete_record` is blocked: the session hands back an MCP tool error carrying Thoth's reason,
  and the loop goes on;
- `transfer_money` needs a reviewer: the call waits until a human approves it in Thoth;
- `list_tools` hides the tools this agent may never use (here: `delete_record`).

Runs offline. With THOTH_API_URL / THOTH_API_KEY set, the Thoth server there decides (its
policy must block delete_record and hold transfer_money, as the test policy does); without
them, the in-process engine decides with the small policy below and approves the held call
itself. pip install ".[mcp]" (in a clone of Thoth)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

LOCAL_POLICY = """\
version: 1
rules:
  - id: no-deletes
    when: {tool: delete_record}
    action: block
    reason: records are never deleted by agents
  - id: payments-need-a-reviewer
    when: {tool: transfer_money}
    action: step_up
    reason: money movement needs a reviewer
"""


def serve() -> None:
    """The local MCP server: three tools of a billing system."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("billing")

    @server.tool()
    def search_docs(query: str) -> str:
        """Search internal documentation."""
        return f"3 documents about {query}"

    @server.tool()
    def delete_record(record_id: str) -> str:
        """Delete a customer record."""
        return f"deleted {record_id}"

    @server.tool()
    def transfer_money(amount: str, to: str) -> str:
        """Move money to an account."""
        return f"moved {amount} to {to}"

    server.run("stdio")


async def agent() -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    import thoth

    settings: dict[str, object] = {"tenant_id": os.environ.get("THOTH_TENANT_ID", "acme")}
    if not os.environ.get("THOTH_API_URL"):  # offline and alone: the in-process engine decides
        from thoth.policy.local import set_local_approver

        policy = Path(tempfile.mkdtemp()) / "policy.yaml"
        policy.write_text(LOCAL_POLICY)
        os.environ["THOTH_POLICY"] = str(policy)
        settings["api_url"] = "local"
        set_local_approver(lambda decision, tool_name: True)  # stands in for the human reviewer

    server = StdioServerParameters(command=sys.executable, args=[__file__, "--server"])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        thoth.instrument(session, agent_id="billing-agent", approved_scope=["search_docs", "transfer_money"],
                         user_id="erin@acme.com", mcp_server="billing", step_up_poll_interval_seconds=0.2,
                         **settings)
        listed = await session.list_tools()
        print("tools the agent sees:", [tool.name for tool in listed.tools])
        for name, args in [("search_docs", {"query": "refunds"}), ("delete_record", {"record_id": "c-42"}),
                           ("transfer_money", {"amount": "25.00", "to": "acct-7"})]:
            result = await session.call_tool(name, args)
            text = " ".join(getattr(item, "text", "") for item in result.content)
            print(f"{name}: {'ERROR ' if result.is_error else ''}{text}")
    thoth.flush()


if __name__ == "__main__":
    if "--server" in sys.argv:
        serve()
    else:
        asyncio.run(agent())
