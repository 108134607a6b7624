"""A real MCP server written with the official SDK (MCPServer), for the adapter tests.

    python mcp_test_server.py NAME stdio RUNLOG
    python mcp_test_server.py NAME http RUNLOG PORT      (streamable HTTP at /mcp)

Every tool body that runs appends one JSON line {server, tool, args, marker} to RUNLOG, so the
tests see what reached the server (and whether a Thoth marker came with the request).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

NAME, TRANSPORT, RUNLOG = sys.argv[1], sys.argv[2], sys.argv[3]
MARKER_KEY = "dev.thoth/decision"

server = MCPServer(NAME)


def ran(tool: str, ctx: Context | None, **args: Any) -> str:
    meta = None
    try:
        meta = ctx.request_context.meta if ctx is not None else None
    except Exception:  # noqa: BLE001 - no request context: no marker to report
        meta = None
    marker = meta.get(MARKER_KEY) if isinstance(meta, dict) else getattr(meta, MARKER_KEY, None)
    with open(RUNLOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"server": NAME, "tool": tool, "args": args, "marker": marker}) + "\n")
    return f"{NAME}:{tool} ok"


@server.tool()
def get_weather(city: str, ctx: Context) -> str:
    """The weather of a city."""
    return ran("get_weather", ctx, city=city)


@server.tool()
def delete_file(path: str, ctx: Context) -> str:
    """Delete a file."""
    return ran("delete_file", ctx, path=path)


@server.tool()
def transfer_money(amount: str, ctx: Context) -> str:
    """Move money (needs a reviewer)."""
    return ran("transfer_money", ctx, amount=amount)


@server.tool()
def wire_funds(amount: str, ctx: Context) -> str:
    """Wire funds (the reviewer denies)."""
    return ran("wire_funds", ctx, amount=amount)


@server.tool()
def delete(item: str, ctx: Context) -> str:
    """Delete an item of this server."""
    return ran("delete", ctx, item=item)


@server.tool()
def search(q: str, ctx: Context) -> str:
    """Search this server."""
    return ran("search", ctx, q=q)


if __name__ == "__main__":
    if TRANSPORT == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[4]))
