"""`thoth mcp proxy --listen ... --upstream URL`: the SDK's streamable-HTTP client -> the proxy ->
a real MCP server on streamable HTTP, with the real `thoth serve` deciding."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.support.serve import free_port, stop_process

from .conftest import PYTHON, UPSTREAM, Tenant

TOKEN = "proxy-token-for-tests"
UPSTREAM_SECRET = "upstream-credential-xyz"
SCOPE = "search,read_file,header,send_email,hang"  # the other tools of the server are hidden


def _wait_port(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, UPSTREAM, "http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    _wait_port(url, proc)
    yield url
    stop_process(proc)


@pytest.fixture
def proxy(real: Tenant, upstream_url: str, tmp_path: Any) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(f"""
[[upstreams]]
name = "notes"
url = "{upstream_url}"
headers_env = {{X-Upstream-Key = "NOTES_KEY"}}
""")
    env = {**real.env(), "PROXY_TOKEN": TOKEN, "NOTES_KEY": UPSTREAM_SECRET}
    proc = subprocess.Popen([PYTHON, *real.proxy_args("--config", str(config), "--listen", f"127.0.0.1:{port}",
                                                      "--token-env", "PROXY_TOKEN", "--progress-interval", "0.2",
                                                      "--timeout", "3", "--scope", SCOPE)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    _wait_port(url, proc)
    yield url
    stop_process(proc)
    assert proc.stderr is not None
    logged = proc.stderr.read().decode(errors="replace")
    assert UPSTREAM_SECRET not in logged and TOKEN not in logged


@asynccontextmanager
async def session_at(url: str, token: str = TOKEN) -> AsyncIterator[ClientSession]:
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with client, streamable_http_client(url, http_client=client) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def test_allow_block_and_passthrough_over_http(real: Tenant, proxy: str) -> None:
    async with session_at(proxy) as session:
        assert sorted(t.name for t in (await session.list_tools()).tools) == sorted(SCOPE.split(","))
        assert text(await session.call_tool("search", {"q": "h"})) == "results for h"
        blocked = await session.call_tool("read_file", {"path": "/etc/passwd"})
        assert blocked.is_error and "sensitive path" in text(blocked)
        assert (await session.read_resource("notes://readme")).contents[0].text == "the readme"  # type: ignore[union-attr]
        # The upstream gets its own credential and never the caller's token.
        assert text(await session.call_tool("header", {"name": "x-upstream-key"})) == UPSTREAM_SECRET
        assert text(await session.call_tool("header", {"name": "authorization"})) == ""
    events = real.events(until=8)
    posts = [e["tool_name"] for e in events if e["event_type"] == "TOOL_CALL_POST"]
    assert posts.count("search") == 1 and "read_file" not in posts
    assert [e["tool_name"] for e in events if e["event_type"] == "TOOL_CALL_BLOCK"] == ["read_file"]


@pytest.mark.parametrize("approve", [True, False])
async def test_step_up_over_http_with_progress_notices(real: Tenant, proxy: str, approve: bool) -> None:
    notices: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notices.append(message)

    async with session_at(proxy) as session:
        call = asyncio.ensure_future(session.call_tool("send_email", {"to": "dan@example.org", "body": "x"},
                                                       progress_callback=on_progress))
        approval = await asyncio.to_thread(real.wait_for_approval)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(real.resolve, approval["approval_id"], approve)
        result = await asyncio.wait_for(call, 20)
    assert notices and "approve" in (notices[0] or "")
    if approve:
        assert text(result) == "sent to dan@example.org"
    else:
        assert result.is_error and "Thoth blocked" in text(result)


async def test_a_callers_own_thoth_key_is_a_credential_with_thoth_keys(real: Tenant, upstream_url: str) -> None:
    port = free_port()
    env = {**real.env()}
    env.pop("THOTH_API_KEY")  # the proxy holds no key of its own: each caller's key is used
    proc = subprocess.Popen([PYTHON, *real.proxy_args("--listen", f"127.0.0.1:{port}", "--upstream", upstream_url,
                                                      "--thoth-keys")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        _wait_port(url, proc)
        async with httpx.AsyncClient() as client:
            denied = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                       headers={"Authorization": "Bearer thk_not_a_key"})
            assert denied.status_code == 401
        async with session_at(url, token=real.sdk_key) as session:
            assert text(await session.call_tool("search", {"q": "k"})) == "results for k"
            blocked = await session.call_tool("read_file", {"path": "/etc/passwd"})
            assert blocked.is_error and "sensitive path" in text(blocked)
            # The caller's Thoth key went to Thoth only, never to the upstream.
            assert text(await session.call_tool("header", {"name": "authorization"})) == ""
    finally:
        stop_process(proc)
    events = real.events(until=4)
    assert [e["tool_name"] for e in events if e["event_type"] == "TOOL_CALL_POST"].count("search") == 1


async def test_the_listener_requires_a_token(proxy: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = await client.post(proxy, json=body, headers=headers)
            assert response.status_code == 401 and "token" in response.json()["message"]


async def test_malformed_oversized_and_a_hanging_upstream_get_json_rpc_errors(proxy: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as client:
        bad = await client.post(proxy, content=b"{nope", headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
        big = await client.post(proxy, content=b'{"x": "' + b"a" * (5 << 20) + b'"}', headers=headers)
        assert big.status_code == 413 and big.json()["error"]["code"] == -32600
    async with session_at(proxy) as session:  # the proxy was started with --timeout 3
        with pytest.raises(Exception, match="did not answer within 3 s"):
            await session.call_tool("hang", {"seconds": 5})
        assert text(await session.call_tool("search", {"q": "still"})) == "results for still"


def test_the_http_listener_refuses_to_start_without_a_token(real: Tenant, upstream_url: str) -> None:
    done = subprocess.run([PYTHON, *real.proxy_args("--listen", f"127.0.0.1:{free_port()}",
                                                    "--upstream", upstream_url)],
                          env={**real.env(), **{k: v for k, v in os.environ.items() if k == "HOME"}},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "open proxy" in done.stderr
