"""MCP software nobody here wrote, from the npm registry, around the proxy:
`@modelcontextprotocol/server-everything` behind it (stdio and HTTP), the MCP conformance suite
run against it and against the server directly (same results), and the MCP inspector's CLI as a
non-Python client through it. Installed by scripts/mcp_npm.sh into .cache/npm (nox session
"mcp_proxy"); skipped with the reason when npm is absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from tests.support.serve import ROOT, free_port, stop_process

from .conftest import HERE, PYTHON, Tenant

TOKEN = "npm-tests-token"


@pytest.fixture(scope="module")
def npm_bin() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node absent: the MCP npm tests need them (apt-get install nodejs npm)")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "mcp_npm.sh")], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(f"scripts/mcp_npm.sh failed: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1]) / "node_modules" / ".bin"


def _up(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
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


@contextmanager
def process(args: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _up(url, proc)
        yield url
    finally:
        stop_process(proc)


@contextmanager
def everything_http(npm_bin: Path) -> Iterator[str]:
    port = free_port()
    with process([str(npm_bin / "mcp-server-everything"), "streamableHttp"], f"http://127.0.0.1:{port}/mcp",
                 env={**os.environ, "PORT": str(port)}) as url:
        yield url


@contextmanager
def proxy_to(real: Tenant, upstream: str) -> Iterator[str]:
    port = free_port()
    with process([PYTHON, *real.proxy_args("--listen", f"127.0.0.1:{port}", "--upstream", upstream,
                                           "--name", "everything", "--token-env", "PROXY_TOKEN")],
                 f"http://127.0.0.1:{port}/mcp", env={**real.env(), "PROXY_TOKEN": TOKEN}) as url:
        yield url


def conformance(npm_bin: Path, url: str, out: Path) -> dict[str, str]:
    done = subprocess.run([str(npm_bin / "conformance"), "server", "--url", url, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    results = dict(re.findall(r"^[✓✗] ([\w-]+): (\d+ passed, \d+ failed)", done.stdout, re.M))
    assert results, done.stdout + done.stderr
    return results


def test_conformance_suite_gives_the_same_results_through_the_proxy(real: Tenant, npm_bin: Path,
                                                                      tmp_path: Path) -> None:
    with everything_http(npm_bin) as upstream:
        direct = conformance(npm_bin, upstream, tmp_path / "direct")
        with proxy_to(real, upstream) as proxy:
            port = free_port()
            with process([PYTHON, str(HERE / "bearer_forwarder.py"), str(port), proxy, TOKEN],
                         f"http://127.0.0.1:{port}/mcp") as forwarder:
                proxied = conformance(npm_bin, forwarder, tmp_path / "proxied")
    assert sum(int(r.split()[0]) for r in direct.values()) > 5  # the suite really ran
    assert proxied == direct


async def test_server_everything_over_stdio_behind_the_proxy(real: Tenant, npm_bin: Path) -> None:
    params = StdioServerParameters(command=PYTHON, args=[*real.proxy_args("--name", "everything"), "--",
                                                         str(npm_bin / "mcp-server-everything"), "stdio"],
                                   env=real.env())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = {t.name for t in (await session.list_tools()).tools}
        assert "echo" in names
        echoed = await session.call_tool("echo", {"message": "hello"})
        assert "hello" in echoed.content[0].text  # type: ignore[union-attr]
        blocked = await session.call_tool("echo", {"message": "a forbidden word"})
        assert blocked.is_error and "forbidden words" in blocked.content[0].text  # type: ignore[union-attr]
        resources = await session.list_resources()
        assert resources.resources
        prompts = await session.list_prompts()
        assert prompts.prompts


def test_inspector_cli_through_the_http_proxy(real: Tenant, npm_bin: Path) -> None:
    with everything_http(npm_bin) as upstream, proxy_to(real, upstream) as proxy:
        # inspector-cli 1.x looks for its package.json relative to the working directory (then
        # imports it relative to its module): run it from its build folder so both agree.
        build = npm_bin.parent / "@modelcontextprotocol" / "inspector-cli" / "build"

        def inspector(*args: str) -> Any:
            done = subprocess.run([str(npm_bin / "mcp-inspector-cli"), "--cli", proxy, "--transport", "http",
                                   "--header", f"Authorization: Bearer {TOKEN}", *args],
                                  capture_output=True, text=True, timeout=120, cwd=build)
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)

        tools = inspector("--method", "tools/list")
        assert "echo" in {t["name"] for t in tools["tools"]}
        echoed = inspector("--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi")
        assert "hi" in echoed["content"][0]["text"] and not echoed.get("isError")
        blocked = inspector("--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=forbidden")
        assert blocked["isError"] and "forbidden words" in blocked["content"][0]["text"]
