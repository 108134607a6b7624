"""A real MCP server written with the official SDK (MCPServer), the upstream of the proxy tests.

    python upstream_server.py                 # stdio
    python upstream_server.py http PORT       # streamable HTTP at /mcp

Its tools cover what the proxy must handle: plain calls, a call policy holds, a tool that crashes
the process, one that hangs, one that reports progress; plus a resource and a prompt (passed
through untouched). `count` tells how many times each tool really ran (in this process).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("proxy-test-upstream")
ran: Counter[str] = Counter()


@server.tool()
def search(q: str) -> str:
    """Search the notes."""
    ran["search"] += 1
    return f"results for {q}"


@server.tool()
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    ran["send_email"] += 1
    return f"sent to {to}"


@server.tool()
def read_file(path: str) -> str:
    """Read a file."""
    ran["read_file"] += 1
    return f"contents of {path}"


@server.tool()
def count(tool: str) -> int:
    """How many times a tool ran in this server process."""
    return ran[tool]


@server.tool()
def getenv(name: str) -> str:
    """An environment variable of this server process ('' when unset)."""
    return os.environ.get(name, "")


@server.tool()
def header(name: str, ctx: Context) -> str:
    """A header of the HTTP request that carried this call ('' when absent or on stdio)."""
    return (ctx.headers or {}).get(name, "")


@server.tool()
def crash() -> str:
    """Exit the server process at once (an upstream that dies mid-call)."""
    os._exit(3)


@server.tool()
async def hang(seconds: float) -> str:
    """Answer after `seconds` (an upstream that hangs)."""
    await asyncio.sleep(seconds)
    return "late"


@server.tool()
async def slow_progress(steps: int, ctx: Context) -> str:
    """Report progress `steps` times."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps)
        await asyncio.sleep(0.01)
    return "done"


@server.resource("notes://readme")
def readme() -> str:
    return "the readme"


@server.prompt()
def greet(name: str) -> str:
    return f"Say hello to {name}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
