"""Condition kinds about the call itself: who calls which tool where (tool, agent, user, tenant,
environment, intent), the catalogue's tier and classification, scope and intent, always."""

from __future__ import annotations

import re
from typing import Any

from thoth.policy.cond_base import CODE, CompilerBase, Kind
from thoth.policy.loader import Path
from thoth.policy.values import glob_regex, is_glob, name_matcher

TIERS = ("low", "medium", "high", "critical")
CLASSIFICATIONS = ("read", "write", "delete", "execute", "external")


class CallConditions(CompilerBase):
    def names(self, value: Any, path: Path) -> list[str] | None:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and v for v in items):
            self.err(path, "expected a name or a list of names (globs like 'db_*' allowed)")
            return None
        for i, v in enumerate(items):
            if is_glob(v):
                try:
                    glob_regex(v)
                except re.error as exc:
                    self.err((*path, i) if isinstance(value, list) else path, f"bad glob {v!r}: {exc}")
                    return None
        return list(items)

    def _field(self, attr: str, value: Any, path: Path) -> str | None:
        names = self.names(value, path)
        if names is None:
            return None
        if not any(is_glob(n) for n in names):
            return f"(c.{attr} in {self.const(frozenset(names))})"
        return f"(c.{attr} is not None and {self.const(name_matcher(names))}(c.{attr}))"

    def gen_tool(self, value: Any, path: Path) -> str | None:
        names = self.names(value, path)
        if names is None:
            return None
        if not any("/" in n for n in names):
            return self._field("tool_name", value, path)
        # A `server/tool` name matches only that MCP server's tool; bare names match the tool on
        # every server and locally (ADR 0401). c.tool_id is `server/tool` for an MCP call, else None.
        if not any(is_glob(n) for n in names):
            wanted = self.const(frozenset(names))
            return f"(c.tool_name in {wanted} or c.tool_id in {wanted})"
        return f"c.names({self.const(name_matcher(names))})"

    def gen_agent(self, value: Any, path: Path) -> str | None:
        return self._field("agent_id", value, path)

    def gen_user(self, value: Any, path: Path) -> str | None:
        return self._field("user_id", value, path)

    def gen_tenant(self, value: Any, path: Path) -> str | None:
        return self._field("tenant_id", value, path)

    def gen_environment(self, value: Any, path: Path) -> str | None:
        return self._field("environment", value, path)

    def gen_intent(self, value: Any, path: Path) -> str | None:
        return self._field("session_intent", value, path)

    def _catalogue_field(self, field_name: str, allowed: tuple[str, ...], value: Any, path: Path) -> str | None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            self.err(path, f"expected one or more of {', '.join(allowed)}; got {bad or value!r}")
            return None
        wanted = set(items)
        tools = frozenset(name for name, meta in self.catalogue.items() if meta.get(field_name) in wanted)
        if not any("/" in name for name in self.catalogue):
            return f"(c.tool_name in {self.const(tools)})"
        # The catalogue names some MCP tools as `server/tool`: that entry wins over the bare name's.
        catalogue = self.const(frozenset(self.catalogue))
        return (f"((c.tool_id if c.tool_id is not None and c.tool_id in {catalogue} else c.tool_name)"
                f" in {self.const(tools)})")

    def gen_tier(self, value: Any, path: Path) -> str | None:
        return self._catalogue_field("tier", TIERS, value, path)

    def gen_classification(self, value: Any, path: Path) -> str | None:
        return self._catalogue_field("classification", CLASSIFICATIONS, value, path)

    def gen_in_scope(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "in_scope takes true or false")
            return None
        return "in_scope" if value else "(not in_scope)"

    def gen_in_intent(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "in_intent takes true or false")
            return None
        return "in_intent" if value else "(not in_intent)"

    def gen_always(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "always takes true or false")
            return None
        return "True" if value else "False"


KINDS = {
    "tool": Kind(CODE, CallConditions.gen_tool),
    "agent": Kind(CODE, CallConditions.gen_agent),
    "user": Kind(CODE, CallConditions.gen_user),
    "tenant": Kind(CODE, CallConditions.gen_tenant),
    "environment": Kind(CODE, CallConditions.gen_environment),
    "intent": Kind(CODE, CallConditions.gen_intent),
    "tier": Kind(CODE, CallConditions.gen_tier),
    "classification": Kind(CODE, CallConditions.gen_classification),
    "in_scope": Kind(CODE, CallConditions.gen_in_scope),
    "in_intent": Kind(CODE, CallConditions.gen_in_intent),
    "always": Kind(CODE, CallConditions.gen_always),
}
