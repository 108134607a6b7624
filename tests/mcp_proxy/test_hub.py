"""Several stdio servers behind one proxy (a config file of [[upstreams]]): one MCP server for the
client, tools and prompts named <server>.<name>, each call governed with its own server's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from .conftest import PYTHON, UPSTREAM, Tenant


async def test_two_servers_behind_one_proxy(real: Tenant, tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(f"""
[[upstreams]]
name = "notes"
command = [{PYTHON!r}, {UPSTREAM!r}]
env = {{MARK = "notes-server"}}

[[upstreams]]
name = "mail"
command = [{PYTHON!r}, {UPSTREAM!r}]
env = {{MARK = "mail-server"}}
""".replace("'", '"'))
    params = StdioServerParameters(command=PYTHON, args=real.proxy_args("--config", str(config)), env=real.env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.capabilities.tools is not None
        names = {t.name for t in (await session.list_tools()).tools}
        assert {"notes.search", "mail.search", "notes.read_file", "mail.send_email"} <= names
        # Each call reaches its own server (its own environment) under the tool's own name.
        first = await session.call_tool("notes.getenv", {"name": "MARK"})
        second = await session.call_tool("mail.getenv", {"name": "MARK"})
        assert [first.content[0].text, second.content[0].text] == ["notes-server", "mail-server"]  # type: ignore[union-attr]
        blocked = await session.call_tool("mail.read_file", {"path": "/etc/passwd"})
        assert blocked.is_error and "sensitive path" in blocked.content[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="unknown name 'search'"):  # names are <server>.<tool> here
            await session.call_tool("search", {"q": "x"})
        resources = await session.list_resources()
        assert [r.uri for r in resources.resources].count("notes://readme") == 2
        prompt = await session.get_prompt("mail.greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
    events = real.events(until=6)
    calls = [(e["event_type"], e["tool_name"]) for e in events]
    assert ("TOOL_CALL_POST", "getenv") in calls and ("TOOL_CALL_BLOCK", "read_file") in calls
