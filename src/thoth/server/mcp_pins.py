"""Pinning MCP tool descriptions: a tool's description and input schema are trusted as first
seen (or as an admin pinned them); a later change (a "rug pull") or a description that carries
hidden instructions is flagged, and policy decides what a call to such a tool gets
(thoth.policy.cond_mcp; by default the call is held for review). docs/mcp.md, ADR 0421.

Two paths, kept apart:
- `observe` runs when a client reports a server's tool list (POST /v1/mcp/tools, at list
  time): it hashes, compares, runs the suspicion heuristics and writes the table.
- `flags` runs on the enforce path of a call that names its `mcp_server`: a dict look-up in a
  per-tenant cache of the tools' flags, re-read after cache_ttl (other processes observe and
  approve too).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from thoth.server import mcp_pin_store as pin_store
from thoth.server.db import Database, StorageUnavailable
from thoth.server.mcp_pin_store import ToolRow
from thoth.server.mcp_suspicion import suspicion

# A tool's states, as `observe` reports them.
PINNED, NEW, CHANGED, SUSPICIOUS, UNPINNED = "pinned", "new", "changed", "suspicious", "unpinned"
# The flags policy reads (CallContext.mcp_pin): several may hold at once.
NO_FLAGS: frozenset[str] = frozenset()
UNPINNED_FLAGS = frozenset({UNPINNED})
MAX_NAME = 200  # server and tool names (the table's VARCHAR)
MAX_DESCRIPTION = 65_536
MAX_SCHEMA = 262_144
MAX_TOOLS = 1_000  # tools of one server in one report or one pin
RETRY_SECONDS = 1.0  # a tenant whose flags could not be read is tried again after this


class PinError(ValueError):
    """Bad input to observe/pin (the API answers 422 with this message)."""


@dataclass(frozen=True)
class Tool:
    """One tool as a client or an admin reported it, hashed."""

    name: str
    description: str
    description_hash: str
    schema: str  # canonical JSON, ASCII (any text stores on PostgreSQL)
    schema_hash: str


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256(text: str) -> str:
    # surrogatepass: a JSON body may carry a lone surrogate; it hashes instead of failing.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def storable(text: str) -> str:
    """Text PostgreSQL can store (no NUL, no lone surrogate); comparisons use the hash of the original."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def parse_tools(raw: Any, where: str = "tools") -> list[Tool]:
    """`[{name, description, input_schema | inputSchema}]` (an MCP tools/list result's `tools`)."""
    if not isinstance(raw, list):
        raise PinError(f"{where} must be a list of tools")
    if len(raw) > MAX_TOOLS:
        raise PinError(f"{where}: at most {MAX_TOOLS} tools")
    tools: list[Tool] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise PinError(f"{at} must be an object with name, description and input_schema")
        name = item.get("name")
        check_name(name, f"{at}.name")
        assert isinstance(name, str)
        if name in seen:
            raise PinError(f"{at}.name: tool {name!r} is listed twice")
        seen.add(name)
        description = item.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise PinError(f"{at}.description must be a string")
        if len(description) > MAX_DESCRIPTION:
            raise PinError(f"{at}.description is longer than {MAX_DESCRIPTION} characters")
        schema = item.get("input_schema", item.get("inputSchema"))
        if schema is not None and not isinstance(schema, Mapping):
            raise PinError(f"{at}.input_schema must be an object")
        try:
            text = canonical_json(schema if schema is not None else {})
        except (TypeError, ValueError):
            raise PinError(f"{at}.input_schema is not plain JSON") from None
        if len(text) > MAX_SCHEMA:
            raise PinError(f"{at}.input_schema is larger than {MAX_SCHEMA} characters")
        tools.append(Tool(name, description, sha256(description), text, sha256(text)))
    return tools


def check_name(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or "\x00" in value:
        raise PinError(f"{where} must be a non-empty string of at most {MAX_NAME} characters")


def judge(row: ToolRow) -> tuple[str, str, frozenset[str]]:
    """A stored tool's state, the reason, and the flags policy sees."""
    flags: set[str] = set()
    reasons: list[str] = []
    if row.pinned_description_hash is None:
        flags.add(UNPINNED)
        reasons.append("not pinned: this tenant requires an admin to pin MCP tools before use")
    elif row.seen_description_hash is not None:
        what = [part for part, differs in (
            ("description", row.seen_description_hash != row.pinned_description_hash),
            ("input schema", row.seen_schema_hash != row.pinned_schema_hash)) if differs]
        if what:
            flags.add(CHANGED)
            reasons.append(f"{' and '.join(what)} changed since it was pinned")
    # An admin who pinned (or approved) exactly this text has read it: no longer suspicious.
    reviewed = row.pinned_by is not None and row.seen_description_hash == row.pinned_description_hash
    if row.suspicion and not reviewed:
        flags.add(SUSPICIOUS)
        reasons.append("suspicious description (" + "; ".join(row.suspicion.splitlines()) + ")")
    if CHANGED in flags:
        state = CHANGED
    elif SUSPICIOUS in flags:
        state = SUSPICIOUS
    elif UNPINNED in flags:
        state = UNPINNED
    else:
        state = PINNED
    return state, "; ".join(reasons) or "matches its pin", frozenset(flags)


def view(row: ToolRow) -> dict[str, Any]:
    """The API's (and the dashboard's) picture of one tool."""
    state, reason, flags = judge(row)

    def side(description: str | None, d_hash: str | None, schema: str | None, s_hash: str | None,
             **extra: Any) -> dict[str, Any] | None:
        if d_hash is None:
            return None
        return {"description": description, "input_schema": json.loads(schema) if schema else {},
                "description_hash": d_hash, "schema_hash": s_hash, **extra}

    return {
        "mcp_server": row.mcp_server, "tool_name": row.tool_name, "state": state, "reason": reason,
        "flags": sorted(flags),
        "suspicion": row.suspicion.splitlines() if row.suspicion else [],
        "pinned": side(row.pinned_description, row.pinned_description_hash, row.pinned_schema,
                       row.pinned_schema_hash, pinned_at=_iso(row.pinned_at),
                       pinned_by=row.pinned_by or "first seen"),
        "current": side(row.seen_description, row.seen_description_hash, row.seen_schema,
                        row.seen_schema_hash, first_seen_at=_iso(row.first_seen_at),
                        last_seen_at=_iso(row.last_seen_at), changed_at=_iso(row.changed_at)),
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from thoth.server.store import iso

    return iso(ts)


def _set_current(row: ToolRow, tool: Tool, now: float) -> None:
    if row.seen_description_hash != tool.description_hash or row.seen_schema_hash != tool.schema_hash:
        row.seen_description, row.seen_description_hash = storable(tool.description), tool.description_hash
        row.seen_schema, row.seen_schema_hash = tool.schema, tool.schema_hash
        row.suspicion = "\n".join(suspicion(tool.description)) or None
    if row.first_seen_at is None:
        row.first_seen_at = now
    row.last_seen_at = now
    differs = row.pinned_description_hash is not None and (
        row.pinned_description_hash != tool.description_hash or row.pinned_schema_hash != tool.schema_hash)
    row.changed_at = (row.changed_at or now) if differs else None


def _set_pin(row: ToolRow, description: str | None, d_hash: str | None, schema: str | None,
             s_hash: str | None, by: str | None, now: float) -> None:
    row.pinned_description, row.pinned_description_hash = description, d_hash
    row.pinned_schema, row.pinned_schema_hash = schema, s_hash
    row.pinned_at, row.pinned_by = now, by
    same = (d_hash, s_hash) == (row.seen_description_hash, row.seen_schema_hash)
    if row.seen_description_hash is None or same:
        row.changed_at = None
    elif row.changed_at is None:
        row.changed_at = now


class McpPins:
    """One server process's pins: the writes of observe/pin/approve and the enforce-side cache."""

    def __init__(self, db: Database, cache_ttl: float = 2.0,
                 require_pinning: Callable[[str], bool] = lambda tenant_id: False) -> None:
        self.db = db
        self.cache_ttl = cache_ttl
        self.require_pinning = require_pinning
        # tenant -> (expires, {(server, tool): flags}), every stored tool (empty flags: pinned).
        self._flags: dict[str, tuple[float, dict[tuple[str, str], frozenset[str]]]] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}

    # ---- list time ---------------------------------------------------------------------

    def observe(self, tenant_id: str, mcp_server: str, tools: Any,
                flags_out: dict[str, frozenset[str]] | None = None) -> dict[str, tuple[str, str]]:
        """Record a server's tool list as a client saw it: {tool_name: (state, reason)}.

        `new`: first seen, and now pinned as seen (unless the tenant requires pre-pinning:
        `unpinned`); `pinned`: matches its pin; `changed`: description or schema differs from
        the pin; `suspicious`: the description looks like it carries instructions (and no admin
        pinned this exact text). `flags_out` receives each tool's flags (what policy sees)."""
        check_name(mcp_server, "mcp_server")
        parsed = tools if isinstance(tools, list) and tools and isinstance(tools[0], Tool) else parse_tools(tools)
        now = time.time()
        required = self.require_pinning(tenant_id)
        first: set[str] = set()

        def change(conn: Any, existing: dict[str, ToolRow]) -> None:
            for tool in parsed:
                row = existing.get(tool.name)
                if row is None:
                    row = ToolRow(tenant_id, mcp_server, tool.name)
                    _set_current(row, tool, now)
                    if not required:
                        _set_pin(row, row.seen_description, tool.description_hash, tool.schema,
                                 tool.schema_hash, None, now)
                    if pin_store.insert(conn, row):
                        first.add(tool.name)
                        continue
                    # Another process recorded it first: compare with what it stored.
                    found = conn.one(pin_store._SELECT + " WHERE tenant_id = ? AND mcp_server = ? AND tool_name = ?",
                                     (tenant_id, mcp_server, tool.name))
                    row = ToolRow(*found)
                elif row.pinned_description_hash is None and not required:
                    # Pre-pinning is no longer required: the tool is pinned as seen now.
                    _set_current(row, tool, now)
                    _set_pin(row, row.seen_description, tool.description_hash, tool.schema,
                             tool.schema_hash, None, now)
                    first.add(tool.name)
                    pin_store.update(conn, row)
                    continue
                _set_current(row, tool, now)
                pin_store.update(conn, row)

        stored = pin_store.save(self.db, tenant_id, mcp_server, change)
        self.forget(tenant_id)
        reported = {t.name for t in parsed}
        out: dict[str, tuple[str, str]] = {}
        for row in stored:
            if row.tool_name not in reported:
                continue
            state, reason, row_flags = judge(row)
            if flags_out is not None:
                flags_out[row.tool_name] = row_flags
            if row.tool_name in first and state == PINNED:
                state, reason = NEW, "first seen: pinned as seen"
            out[row.tool_name] = (state, reason)
        return out

    # ---- admin -------------------------------------------------------------------------

    def pin(self, tenant_id: str, mcp_server: str, tools: Any, by: str) -> list[dict[str, Any]]:
        """Pin these descriptions and schemas (ahead of first use, or over the current pin)."""
        check_name(mcp_server, "mcp_server")
        parsed = parse_tools(tools)
        now = time.time()

        def change(conn: Any, existing: dict[str, ToolRow]) -> None:
            for tool in parsed:
                row = existing.get(tool.name)
                fresh = row is None
                if row is None:
                    row = ToolRow(tenant_id, mcp_server, tool.name)
                _set_pin(row, storable(tool.description), tool.description_hash, tool.schema, tool.schema_hash,
                         by, now)
                if fresh and not pin_store.insert(conn, row):
                    fresh = False
                if not fresh:
                    pin_store.update(conn, row)

        stored = pin_store.save(self.db, tenant_id, mcp_server, change)
        self.forget(tenant_id)
        names = {t.name for t in parsed}
        return [view(r) for r in stored if r.tool_name in names]

    def approve(self, tenant_id: str, mcp_server: str, tool_name: str, by: str) -> dict[str, Any]:
        """Re-pin a tool to what its server says now (an admin read the change). LookupError:
        no such tool; PinError: nothing seen to approve."""
        now = time.time()
        result: list[ToolRow] = []

        def change(conn: Any, existing: dict[str, ToolRow]) -> None:
            row = existing.get(tool_name)
            if row is None:
                raise LookupError(f"no tool {tool_name!r} of MCP server {mcp_server!r}")
            if row.seen_description_hash is None:
                raise PinError("this tool was pinned ahead of use and has not been seen since: nothing to approve")
            _set_pin(row, row.seen_description, row.seen_description_hash, row.seen_schema,
                     row.seen_schema_hash, by, now)
            pin_store.update(conn, row)
            result.append(row)

        pin_store.save(self.db, tenant_id, mcp_server, change)
        self.forget(tenant_id)
        return view(result[0])

    def servers(self, tenant_id: str) -> list[dict[str, Any]]:
        by_server: dict[str, dict[str, Any]] = {}
        for row in pin_store.rows(self.db, tenant_id):
            state, _, _ = judge(row)
            entry = by_server.setdefault(row.mcp_server, {"mcp_server": row.mcp_server, "tools": 0, PINNED: 0,
                                                          CHANGED: 0, SUSPICIOUS: 0, UNPINNED: 0,
                                                          "last_seen_at": None})
            entry["tools"] += 1
            entry[state] += 1
            seen = _iso(row.last_seen_at)
            if seen is not None and (entry["last_seen_at"] is None or seen > entry["last_seen_at"]):
                entry["last_seen_at"] = seen
        return list(by_server.values())

    def tools(self, tenant_id: str, mcp_server: str | None = None) -> list[dict[str, Any]]:
        return [view(r) for r in pin_store.rows(self.db, tenant_id, mcp_server)]

    # ---- enforce -----------------------------------------------------------------------

    async def flags(self, tenant_id: str, mcp_server: str, tool_name: str, read: Any) -> frozenset[str]:
        """The pin flags of a called tool, from the tenant's cache (`read` is Core.read: the
        database off the loop on PostgreSQL). A tool never reported is unflagged, or `unpinned`
        where the tenant requires pre-pinning."""
        entry = self._flags.get(tenant_id)
        if entry is None or entry[0] < time.monotonic():
            entry = await self._load(tenant_id, read)
        found = entry[1].get((mcp_server, tool_name))
        if found is None:  # never reported nor pinned
            return UNPINNED_FLAGS if self.require_pinning(tenant_id) else NO_FLAGS
        return found

    async def _load(self, tenant_id: str, read: Any) -> tuple[float, dict[tuple[str, str], frozenset[str]]]:
        pending = self._loading.get(tenant_id)
        if pending is None:  # concurrent calls of one tenant share one read
            pending = self._loading[tenant_id] = asyncio.ensure_future(self._read(tenant_id, read))
            pending.add_done_callback(lambda _: self._loading.pop(tenant_id, None))
        result: tuple[float, dict[tuple[str, str], frozenset[str]]] = await asyncio.shield(pending)
        return result

    async def _read(self, tenant_id: str, read: Any) -> tuple[float, dict[tuple[str, str], frozenset[str]]]:
        try:
            stored = await read(pin_store.flag_rows, self.db, tenant_id)
        except StorageUnavailable:
            # The database cannot answer: the flags known before go on serving (they were
            # right a moment ago); a tenant never read is decided without them until it answers.
            old = self._flags.get(tenant_id)
            entry = (time.monotonic() + RETRY_SECONDS, old[1] if old else {})
            self._flags[tenant_id] = entry
            return entry
        table: dict[tuple[str, str], frozenset[str]] = {}
        for row in stored:
            # Unflagged tools are kept too (empty flags): a pinned tool is known, not "never reported".
            table[(row.mcp_server, row.tool_name)] = judge(row)[2]
        entry = (time.monotonic() + self.cache_ttl, table)
        self._flags[tenant_id] = entry
        return entry

    def forget(self, tenant_id: str) -> None:
        """This process changed the tenant's pins: its next call re-reads them."""
        self._flags.pop(tenant_id, None)


def require_pinning_setting(value: str | None) -> Callable[[str], bool]:
    """THOTH_MCP_REQUIRE_PINNING: empty/0/off for none, 1/on/true/yes/* for every tenant, else
    a comma-separated list of tenant ids."""
    text = (value or "").strip()
    if text.lower() in ("", "0", "off", "false", "no"):
        return lambda tenant_id: False
    if text.lower() in ("1", "on", "true", "yes", "*", "all"):
        return lambda tenant_id: True
    tenants = frozenset(t.strip() for t in text.split(",") if t.strip())
    return lambda tenant_id: tenant_id in tenants


def load_pin_file(path: str) -> dict[str, Any]:
    """A pin file (JSON or YAML): `{tenant?: T, servers: {NAME: {tools: [...]} | [...]}}`, where
    the tools are what the server's tools/list answers (`name`, `description`, `inputSchema`)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PinError(f"{path}: neither JSON nor YAML ({exc})") from None
    return data if isinstance(data, dict) else {"servers": data}


def servers_of(document: Any) -> dict[str, Any]:
    """{server name: tools list} of a pin document (the file's, or the API's body)."""
    if not isinstance(document, Mapping):
        raise PinError("a pin document is an object: {\"servers\": {NAME: {\"tools\": [...]}}}")
    servers = document.get("servers")
    if not isinstance(servers, Mapping) or not servers:
        raise PinError("servers must be a non-empty object: {NAME: {\"tools\": [...]}}")
    out: dict[str, Any] = {}
    for name, spec in servers.items():
        check_name(name, "servers key")
        tools = spec.get("tools") if isinstance(spec, Mapping) else spec
        out[str(name)] = tools
    return out


def apply_document(pins: McpPins, document: Any, tenant_id: str | None, by: str) -> dict[str, int]:
    """Pin every server of a pin document; all of it is checked before anything is written.
    The tenant: `tenant_id`, else the document's `tenant`, else "default"."""
    servers = servers_of(document)
    parsed = {name: parse_tools(tools, f"servers.{name}.tools") for name, tools in servers.items()}
    tenant = tenant_id or (document.get("tenant") if isinstance(document.get("tenant"), str) else None) or "default"
    counts: dict[str, int] = {}
    for name, tools in parsed.items():
        counts[name] = len(pins.pin(tenant, name, [_as_item(t) for t in tools], by))
    return counts


def _as_item(tool: Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": json.loads(tool.schema)}


def pin_file(database_url: str, path: str, tenant_id: str | None) -> dict[str, int]:
    """Pin a file's tools; ValueError (a PinError, or a file that cannot be read) says why not."""
    from thoth.server import migrate

    try:
        document = load_pin_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        return apply_document(McpPins(db), document, tenant_id, f"file:{path}")
    finally:
        db.close()


async def pin_listed(core: Any, tenant_id: str, mcp_server: str, tools: list[dict[str, Any]],
                     out: list[dict[str, Any]]) -> None:
    """The pin side of POST /v1/mcp/tools (a client listed a server's tools): observe them and set
    each answer entry's `pin` (the state) and `pin_reason`. A tool the tenant's policy would hold
    or block for its flags (defaults.mcp_*, step_up unless set) is also hidden (`visible: false`):
    the model should not read a description nobody trusts; a call by name is still held. A tool
    that cannot be pinned (name over 200 characters, description over 64 KiB, schema not plain
    JSON) is hidden with `pin: "refused"`."""
    entries = {entry["name"]: entry for entry in out}
    valid: dict[str, Tool] = {}
    refused: dict[str, str] = {}
    for tool in tools:
        try:
            check_name(mcp_server, "mcp_server")
            parsed = parse_tools([tool])[0]
        except PinError as exc:
            refused[str(tool.get("name"))] = str(exc).replace("tools[0]", "this tool")
            continue
        valid.setdefault(parsed.name, parsed)
    flags: dict[str, frozenset[str]] = {}
    states: dict[str, tuple[str, str]] = {}
    if valid:
        states = await core.read(core.mcp_pins.observe, tenant_id, mcp_server, list(valid.values()), flags)
    policy, _ = await core.policy(tenant_id)
    actions = getattr(policy, "mcp_actions", None) or {}
    for name, (state, reason) in states.items():
        entry = entries.get(name)
        if entry is None:
            continue
        entry["pin"] = state
        if state not in (PINNED, NEW):
            entry["pin_reason"] = reason
        if any(str(getattr(actions.get(flag), "value", "ALLOW")).upper() != "ALLOW" for flag in flags.get(name, ())):
            entry["visible"] = False
            entry["reason"] = f"held for review: {reason}"
    for name, why in refused.items():
        entry = entries.get(name)
        if entry is not None:
            entry.update(pin="refused", pin_reason=why, visible=False, reason=f"cannot be pinned: {why}")
