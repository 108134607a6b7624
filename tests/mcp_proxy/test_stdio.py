"""`thoth mcp proxy -- COMMAND` over stdio: the SDK's ClientSession -> proxy -> a real MCP server,
with the real `thoth serve` deciding."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from .conftest import PYTHON, UPSTREAM, Tenant


@asynccontextmanager
async def proxied(real: Tenant, *extra: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=PYTHON, args=[*real.proxy_args(*extra), "--", PYTHON, UPSTREAM],
                                   env=real.env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def test_allowed_call_is_forwarded_and_recorded_and_the_rest_passes_through(real: Tenant) -> None:
    async with proxied(real) as session:
        result = await session.call_tool("search", {"q": "mcp"})
        assert text(result) == "results for mcp" and not result.is_error
        readme = await session.read_resource("notes://readme")
        assert readme.contents[0].text == "the readme"  # type: ignore[union-attr]
        prompt = await session.get_prompt("greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(progress)

        done = await session.call_tool("slow_progress", {"steps": 3}, progress_callback=on_progress)
        assert text(done) == "done" and steps == [1, 2, 3]
        # The proxy's own Thoth key is not in the wrapped server's environment.
        assert text(await session.call_tool("getenv", {"name": "THOTH_API_KEY"})) == ""
    events = real.events(until=6)
    kinds = [(e["event_type"], e["tool_name"]) for e in events]
    assert kinds.count(("TOOL_CALL_PRE", "search")) == 1
    assert kinds.count(("TOOL_CALL_POST", "search")) == 1
    assert kinds.count(("TOOL_CALL_POST", "slow_progress")) == 1


async def test_blocked_call_is_a_tool_error_with_the_reason_and_never_runs(real: Tenant) -> None:
    async with proxied(real) as session:
        result = await session.call_tool("read_file", {"path": "/etc/passwd"})
        assert result.is_error and "sensitive path" in text(result)
        assert text(await session.call_tool("count", {"tool": "read_file"})) == "0"
        ok = await session.call_tool("read_file", {"path": "/tmp/notes"})  # the agent loop goes on
        assert text(ok) == "contents of /tmp/notes"
    violations = real.call("GET", f"/v1/violations?agent_id={real.agent_id}")["items"]
    assert len(violations) == 1 and violations[0]["tool_name"] == "read_file"


async def test_tools_list_hides_tools_outside_the_agents_scope(real: Tenant) -> None:
    async with proxied(real, "--scope", "search,count") as session:
        names = sorted(t.name for t in (await session.list_tools()).tools)
    assert names == ["count", "search"]


@pytest.mark.parametrize("approve", [True, False])
async def test_step_up_waits_for_a_human_with_progress_notices(real: Tenant, approve: bool) -> None:
    notices: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notices.append(message)

    async with proxied(real, "--progress-interval", "0.2") as session:
        call = asyncio.ensure_future(session.call_tool("send_email", {"to": "bob@example.org", "body": "hi"},
                                                       progress_callback=on_progress))
        approval = await asyncio.to_thread(real.wait_for_approval)
        await asyncio.sleep(0.5)
        assert not call.done()
        await asyncio.to_thread(real.resolve, approval["approval_id"], approve)
        result = await asyncio.wait_for(call, 20)
        ran = text(await session.call_tool("count", {"tool": "send_email"}))
    assert notices and all("approve" in (m or "") for m in notices)
    if approve:
        assert text(result) == "sent to bob@example.org" and ran == "1"
    else:
        assert result.is_error and "Thoth blocked" in text(result) and ran == "0"


async def test_a_call_cancelled_while_held_never_runs_and_its_retry_reuses_the_approval(real: Tenant) -> None:
    args = {"to": "carol@example.org", "body": "hello"}
    async with proxied(real) as session:
        with anyio.move_on_after(1.0):  # the client gives up: the SDK sends notifications/cancelled
            await session.call_tool("send_email", args)
        approval = await asyncio.to_thread(real.wait_for_approval)
        await asyncio.to_thread(real.resolve, approval["approval_id"], True)
        await asyncio.sleep(1.0)
        assert text(await session.call_tool("count", {"tool": "send_email"})) == "0"  # not forwarded later
        retry = await session.call_tool("send_email", args)
        assert text(retry) == "sent to carol@example.org"
        assert text(await session.call_tool("count", {"tool": "send_email"})) == "1"
    assert real.pending() == []  # the retry asked no one again


async def test_an_upstream_that_dies_fails_its_call_and_the_proxy_serves_on(real: Tenant) -> None:
    async with proxied(real) as session:
        with pytest.raises(MCPError, match="ended"):
            await session.call_tool("crash", {})
        again = await session.call_tool("search", {"q": "after"})  # a new upstream, initialize replayed
        assert text(again) == "results for after"
    events = real.events(until=4)
    crash_posts = [e for e in events if e["event_type"] == "TOOL_CALL_POST" and e["tool_name"] == "crash"]
    assert len(crash_posts) == 1 and crash_posts[0]["metadata"]["error"] is True


async def test_an_upstream_that_hangs_gets_a_timeout_error_and_the_proxy_serves_on(real: Tenant) -> None:
    # 3 s: the upstream's own start (and so its answer to initialize) must fit in it on a loaded CI
    async with proxied(real, "--timeout", "3") as session:
        with pytest.raises(MCPError, match="did not answer within 3 s"):
            await session.call_tool("hang", {"seconds": 5})
        assert text(await session.call_tool("search", {"q": "x"})) == "results for x"
        await asyncio.sleep(2.5)  # the late answer arrives and is dropped
        assert text(await session.call_tool("search", {"q": "y"})) == "results for y"
    events = real.events(until=6)
    hang_posts = [e for e in events if e["event_type"] == "TOOL_CALL_POST" and e["tool_name"] == "hang"]
    assert len(hang_posts) == 1 and hang_posts[0]["metadata"]["error"] is True


def test_malformed_and_oversized_messages_get_json_rpc_errors_and_the_proxy_serves_on(real: Tenant) -> None:
    proc = subprocess.Popen([PYTHON, *real.proxy_args(), "--", PYTHON, UPSTREAM], env=real.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        def send(raw: bytes) -> dict[str, Any]:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(raw + b"\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

        assert send(b"{not json")["error"]["code"] == -32700
        assert send(b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]')["error"]["code"] == -32600
        assert send(b'{"jsonrpc": "1.0", "id": 7, "method": "ping"}') == {
            "jsonrpc": "2.0", "id": 7, "error": {"code": -32600, "message": 'a JSON-RPC message has "jsonrpc": "2.0"'}}
        big = send(b'{"jsonrpc": "2.0", "id": 8, "method": "ping", "params": {"x": "' + b"a" * (5 << 20) + b'"}}')
        assert big["error"]["code"] == -32600 and "limit" in big["error"]["message"]
        init = send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode())
        assert init["id"] == 9 and init["result"]["serverInfo"]["name"] == "proxy-test-upstream"
        bad_call = send(b'{"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": 5}}')
        assert bad_call["error"]["code"] == -32602
    finally:
        proc.stdin.close()
        proc.wait(10)


async def test_a_call_checked_by_the_sdk_adapter_is_not_checked_again_by_the_proxy(real: Tenant) -> None:
    from thoth.instrumentor import build_tracer
    from thoth.integrations.mcp import govern_session

    sdk_agent = f"{real.agent_id}-sdk"
    tracer = build_tracer(agent_id=sdk_agent, tenant_id=real.tenant_id, api_key=real.sdk_key,
                          api_url=real.server.url, enforcement="progressive")
    async with proxied(real, "--name", "notes") as session:
        govern_session(session, tracer, server="notes")  # the agent's own SDK checks first
        assert text(await session.call_tool("search", {"q": "once"})) == "results for once"
        blocked = await session.call_tool("read_file", {"path": "/etc/passwd"})
        assert blocked.is_error and "sensitive path" in text(blocked)
    tracer.flush()
    sdk_events = real.call("GET", f"/v1/sessions/{tracer.session.session_id}")["events"]
    assert [e["event_type"] for e in sdk_events if e["tool_name"] == "search"] == ["TOOL_CALL_PRE", "TOOL_CALL_POST"]
    # The proxy verified the marker and forwarded without a check (and without events) of its own.
    assert real.events(timeout=2.0) == []
