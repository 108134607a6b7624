"""`thoth mcp pin --file tools.json --tenant T`: pin MCP servers' tool descriptions ahead of use
(docs/mcp.md, "Pinning tool descriptions"). Writes the server's database directly, like
`thoth keys create`; the control-plane API (POST /v1/mcp/pins) does the same over HTTP."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from thoth.server.cli import SettingsProblem, _db_arg, _fail, _guard
from thoth.server.mcp_pins import pin_file
from thoth.server.settings import Settings, default_database_url


def mcp_commands(subparsers: Any) -> Any:
    """The `mcp` command's sub-commands, shared with other modules that add to it (the proxy)."""
    found = subparsers.choices.get("mcp")
    if found is None:
        found = subparsers.add_parser("mcp", help="govern MCP servers' tools (pinning, proxy)")
        found.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    for action in found._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the mcp command has no sub-commands")


def register(subparsers: Any) -> None:
    sub = mcp_commands(subparsers)
    pin = sub.add_parser("pin", help="pin MCP tools' descriptions and input schemas from a file (JSON or YAML)")
    pin.add_argument("--file", required=True,
                     help="{servers: {NAME: {tools: [{name, description, inputSchema}]}}} (a tools/list answer per server)")
    pin.add_argument("--tenant", default=None, help="tenant (default: the file's `tenant`, else 'default')")
    _db_arg(pin)
    pin.set_defaults(handler=cmd_pin)


@_guard
def cmd_pin(args: argparse.Namespace) -> int:
    try:
        url = Settings(database_url=args.database_url or default_database_url()).database_url
    except ValueError as exc:
        raise SettingsProblem(str(exc)) from None
    try:
        counts = pin_file(url, args.file, args.tenant)
    except ValueError as exc:
        return _fail(str(exc))
    for server, n in counts.items():
        print(f"pinned {n} tool{'s' if n != 1 else ''} of MCP server {server}", file=sys.stdout)
    return 0
