"""`thoth mcp proxy`: the command line of the governing MCP proxy (docs/mcp.md, "As a proxy")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from thoth.mcp_proxy import config as proxy_config
from thoth.mcp_proxy.governance import Governance


def register(sub: Any) -> None:
    mcp = sub.add_parser("mcp", help="govern Model Context Protocol servers")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="MCP_COMMAND")
    p = mcp_sub.add_parser(
        "proxy", help="a governing MCP proxy: stdio (-- COMMAND ARGS) or streamable HTTP (--listen)",
        description="Every tools/call is checked by Thoth before it reaches the server; tools/list is "
                    "filtered; everything else passes through. stdio: thoth mcp proxy -- COMMAND ARGS. "
                    "HTTP: thoth mcp proxy --listen HOST:PORT --upstream URL (or --config FILE).")
    p.add_argument("--config", help="a TOML or YAML file: [thoth] settings and [[upstreams]] (docs/mcp.md)")
    p.add_argument("--name", help="the MCP server's name in policy and audit (mcp_server); default: the "
                                  "command's or URL's last part")
    p.add_argument("--agent-id", default=os.environ.get("THOTH_AGENT_ID"), help="default $THOTH_AGENT_ID")
    p.add_argument("--tenant-id", default=os.environ.get("THOTH_TENANT_ID"), help="default $THOTH_TENANT_ID")
    p.add_argument("--api-url", default=None, help="Thoth's URL, or 'local' for in-process policy "
                                                   "(default $THOTH_API_URL); the key is $THOTH_API_KEY")
    p.add_argument("--scope", default=None, help="comma-separated tools this agent may use (others are "
                                                 "hidden from tools/list)")
    p.add_argument("--enforcement", default=None, help="block | step_up | progressive | observe")
    p.add_argument("--listen", help="HOST:PORT: serve streamable HTTP at /mcp instead of stdio")
    p.add_argument("--upstream", help="the upstream server's streamable-HTTP URL (with --listen)")
    p.add_argument("--token-env", action="append", default=[],
                   help="an environment variable holding a token HTTP clients must present (repeatable)")
    p.add_argument("--thoth-keys", action="store_true",
                   help="HTTP callers may present their own Thoth API key (Bearer) instead of a token; their "
                        "calls are then checked and recorded under that key")
    p.add_argument("--timeout", type=float, default=None, help="seconds an upstream may take to answer (300)")
    p.add_argument("--progress-interval", type=float, default=None,
                   help="seconds between progress notices while a call is held (5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS: the stdio server to wrap")
    p.set_defaults(handler=_run)
    mcp.set_defaults(handler=lambda _args: (mcp.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("THOTH_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="thoth mcp proxy: %(levelname)s %(message)s")
    try:
        settings = proxy_config.load(args)
    except proxy_config.ConfigError as exc:
        print(f"thoth mcp proxy: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(settings))
    except proxy_config.ConfigError as exc:
        print(f"thoth mcp proxy: {exc}", file=sys.stderr)
        return 2
    return 0


async def run(settings: proxy_config.ProxySettings) -> None:
    """The proxy the settings describe, until its client goes away (stdio) or it is stopped."""
    try:
        governance = Governance(settings.thoth)
    except (ValueError, RuntimeError) as exc:
        raise proxy_config.ConfigError(str(exc)) from None
    spec = settings.upstreams[0]
    if len(settings.upstreams) > 1:
        from thoth.mcp_proxy.stdio import StdioUpstream, serve_stdio_hub

        await serve_stdio_hub(governance, [StdioUpstream(u.name, u.command or [], u.env) for u in settings.upstreams],
                              timeout=settings.timeout, progress_interval=settings.progress_interval)
        return
    if settings.listen is None:
        if spec.command is None:
            raise proxy_config.ConfigError("stdio mode wraps a command (-- COMMAND ARGS); for a URL upstream use --listen")
        from thoth.mcp_proxy.stdio import StdioUpstream, serve_stdio

        await serve_stdio(governance, StdioUpstream(spec.name, spec.command, spec.env),
                          timeout=settings.timeout, progress_interval=settings.progress_interval)
        return
    from thoth.mcp_proxy.http import serve_http

    await serve_http(governance, settings)
