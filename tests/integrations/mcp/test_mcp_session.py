"""The governed mcp ClientSession (thoth.integrations.mcp) against real MCP servers written with
the official SDK, over stdio and streamable HTTP, and the real `thoth serve`: allow, block (an
MCP tool error, the session goes on), step-up approved and denied, the filtered tools list,
and `delete` on two servers told apart."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

import thoth
from thoth import ThothPolicyViolation
from thoth.integrations.mcp import MARKER_KEY, govern_session

from ..support import SCOPE, Governance, instrument_settings, make_tracer

MCP_SCOPE = [*SCOPE, "delete", "search"]
SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")


def ran(runlog: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in runlog.read_text().splitlines() if line.strip()]


@asynccontextmanager
async def stdio_session(name: str, runlog: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT), name, "stdio", str(runlog)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 45))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_allow_block_step_up_and_the_loop_goes_on(governance: Governance, runlog: Path, http_mcp: Any,
                                                  transport: str) -> None:
    async def main() -> None:
        opened = stdio_session("tools", runlog) if transport == "stdio" else http_session(http_mcp("tools"))
        async with opened as session:
            assert thoth.instrument(session, **instrument_settings(governance, approved_scope=MCP_SCOPE),
                                    mcp_server="tools") is session
            assert isinstance(session, ClientSession)  # patched in place: frameworks still see a session
            allowed = await session.call_tool("get_weather", {"city": "Paris"})
            assert not allowed.is_error and text(allowed) == "tools:get_weather ok"
            blocked = await session.call_tool("delete_file", {"path": "/etc/passwd"})
            assert blocked.is_error and "blocked by Thoth" in text(blocked) and "not allowed here" in text(blocked)
            approved = await session.call_tool("transfer_money", {"amount": "10"})
            assert not approved.is_error and text(approved) == "tools:transfer_money ok"
            denied = await session.call_tool("wire_funds", {"amount": "10"})
            assert denied.is_error and "denied by reviewer" in text(denied)
            after = await session.call_tool("search", {"q": "still going"})  # the loop goes on
            assert not after.is_error

    run(main)
    assert [r["tool"] for r in ran(runlog)] == ["get_weather", "transfer_money", "search"]
    # exactly one check per call, the blocked and denied ones included
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "transfer_money": 1,
                                           "wire_funds": 1, "search": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}


def test_delete_on_two_servers_is_told_apart(governance: Governance, runlog: Path, http_mcp: Any) -> None:
    async def main() -> None:
        async with stdio_session("mail", runlog) as mail, http_session(http_mcp("files")) as files:
            tracer = make_tracer(governance, approved_scope=MCP_SCOPE)
            govern_session(mail, tracer, server="mail")
            govern_session(files, tracer, server="files")
            on_mail = await mail.call_tool("delete", {"item": "inbox/1"})
            assert on_mail.is_error and "mail is never deleted by agents" in text(on_mail)
            on_files = await files.call_tool("delete", {"item": "tmp/1"})
            assert not on_files.is_error and text(on_files) == "files:delete ok"

            # tools/list: the same tool hidden on one server only; the unconditional block hidden
            # everywhere; tools outside the agent's scope hidden too
            mail_tools = {t.name for t in (await mail.list_tools()).tools}
            files_tools = {t.name for t in (await files.list_tools()).tools}
            assert mail_tools == {"get_weather", "transfer_money", "wire_funds", "search"}
            assert files_tools == {"get_weather", "transfer_money", "wire_funds", "search", "delete"}

    run(main)
    assert [(r["server"], r["tool"]) for r in ran(runlog)] == [("files", "delete")]
    decisions = [(d["tool_name"], d["decision"]) for d in governance.decisions()]
    assert sorted(decisions) == [("delete", "ALLOW"), ("delete", "BLOCK")]


def test_on_block_raise_and_marker(governance: Governance, runlog: Path) -> None:
    async def main() -> None:
        async with stdio_session("tools", runlog) as session:
            govern_session(session, make_tracer(governance, approved_scope=MCP_SCOPE), server="tools",
                           on_block="raise")
            with pytest.raises(ThothPolicyViolation) as caught:
                await session.call_tool("delete_file", {"path": "/x"})
            assert caught.value.tool_name == "delete_file"
            await session.call_tool("get_weather", {"city": "Rome"})
            # governing again replaces the governance: still one check per call
            govern_session(session, make_tracer(governance, approved_scope=MCP_SCOPE), server="tools")
            await session.call_tool("get_weather", {"city": "Oslo"})

    run(main)
    rows = ran(runlog)
    assert [r["args"]["city"] for r in rows] == ["Rome", "Oslo"]
    assert governance.enforce_counts() == {"delete_file": 1, "get_weather": 2}
    assert all(isinstance(r["marker"], str) and r["marker"] for r in rows), rows  # the proxy's hint (ADR 0403)
    assert MARKER_KEY == "dev.thoth/decision"


def test_listing_is_cached_and_hidden_tools_still_checked(governance: Governance, runlog: Path) -> None:
    async def main() -> None:
        async with stdio_session("mail", runlog) as session:
            govern_session(session, make_tracer(governance, approved_scope=MCP_SCOPE), server="mail")
            first = {t.name for t in (await session.list_tools()).tools}
            second = {t.name for t in (await session.list_tools()).tools}
            assert first == second and "delete" not in first and "delete_file" not in first
            # a hidden tool called anyway (a model that guessed its name): still checked, still blocked
            result = await session.call_tool("delete", {"item": "x"})
            assert result.is_error

    run(main)
    assert ran(runlog) == []
