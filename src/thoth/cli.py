"""`thoth` command line. Each area registers its own sub-commands from its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module path -> function register(subparsers). A module whose optional dependencies are
# missing is skipped with a hint instead of breaking the whole CLI.
_COMMAND_MODULES = {
    "thoth.server.cli": "server",
    "thoth.server.dashboard.cli": "server",
    "thoth.policy.cli": "policy",
    "thoth.audit.cli": "audit",  # imports without the server: `verify --export` works offline
}
# Modules that add sub-commands to a command another module may create (`thoth mcp pin` joins
# `thoth mcp`, which the proxy's module adds): registered after all of the above, whatever their
# order, and they create the command only when no module did.
_EXTENDING_MODULES = {
    "thoth.server.mcp_cli": "server",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thoth", description="Thoth: governance for AI agents' tool calls.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, extra in {**_COMMAND_MODULES, **_EXTENDING_MODULES}.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("thoth"):
                continue
            _missing[extra] = str(exc)
            continue
        module.register(sub)
    return parser


_missing: dict[str, str] = {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        for extra, why in _missing.items():
            print(f"\nSome commands need the '{extra}' extra: pip install '.[{extra}]' in a clone of Thoth ({why})",
                  file=sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
