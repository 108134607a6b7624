"""Condition kinds about an MCP tool's pinned description (docs/mcp.md, "Pinning tool
descriptions"). The server fills CallContext.mcp_pin for a call that names its `mcp_server`
from the tool's pin (thoth.server.mcp_pins); for any other call the set is empty and these
kinds are false.

    - when: {mcp_description_changed: true}      # a "rug pull": description or schema differs from the pin
    - when: {mcp_description_suspicious: true}   # the description looks like it carries instructions
    - when: {mcp_tool_unpinned: true}            # the tenant requires pre-pinning and no admin pinned it
"""

from __future__ import annotations

from typing import Any

from thoth.policy.cond_base import CODE, CompilerBase, Kind
from thoth.policy.loader import Path

# condition kind -> the flag it tests (and the engine's `defaults:` key of the same name)
FLAGS = {"mcp_description_changed": "changed", "mcp_description_suspicious": "suspicious",
         "mcp_tool_unpinned": "unpinned"}


class McpConditions(CompilerBase):
    def _flag(self, kind: str, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, f"{kind} takes true or false")
            return None
        test = f"({self.const(FLAGS[kind])} in c.mcp_pin)"
        return test if value else f"(not {test})"

    def gen_changed(self, value: Any, path: Path) -> str | None:
        return self._flag("mcp_description_changed", value, path)

    def gen_suspicious(self, value: Any, path: Path) -> str | None:
        return self._flag("mcp_description_suspicious", value, path)

    def gen_unpinned(self, value: Any, path: Path) -> str | None:
        return self._flag("mcp_tool_unpinned", value, path)


KINDS = {
    "mcp_description_changed": Kind(CODE, McpConditions.gen_changed),
    "mcp_description_suspicious": Kind(CODE, McpConditions.gen_suspicious),
    "mcp_tool_unpinned": Kind(CODE, McpConditions.gen_unpinned),
}
