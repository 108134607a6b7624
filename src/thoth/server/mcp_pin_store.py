"""The `mcp_tools` table (migration 0008): per tenant, MCP server and tool, the pinned
description and input schema and the ones seen last. SQL only; thoth.server.mcp_pins decides."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from thoth.server.db import Connection, Database


@dataclass
class ToolRow:
    tenant_id: str
    mcp_server: str
    tool_name: str
    # The pin: what this tool is trusted to say. NULL while a tenant that requires pre-pinning
    # has seen the tool but no admin pinned it.
    pinned_description: str | None = None
    pinned_description_hash: str | None = None
    pinned_schema: str | None = None
    pinned_schema_hash: str | None = None
    pinned_at: float | None = None
    pinned_by: str | None = None  # NULL: pinned automatically when first seen; else who pinned it
    # What the server said last (NULL: pinned ahead of first use, not seen yet).
    seen_description: str | None = None
    seen_description_hash: str | None = None
    seen_schema: str | None = None
    seen_schema_hash: str | None = None
    suspicion: str | None = None  # the current description's suspicion reasons, one per line
    first_seen_at: float | None = None
    last_seen_at: float | None = None
    changed_at: float | None = None  # when the current version first differed from the pin


COLUMNS = tuple(f.name for f in fields(ToolRow))
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM mcp_tools"
_KEY = ("tenant_id", "mcp_server", "tool_name")
_VALUES = tuple(c for c in COLUMNS if c not in _KEY)


def rows(db: Database, tenant_id: str, mcp_server: str | None = None) -> list[ToolRow]:
    with db.read() as conn:
        return _rows(conn, tenant_id, mcp_server)


def _rows(conn: Connection, tenant_id: str, mcp_server: str | None = None) -> list[ToolRow]:
    if mcp_server is None:
        found = conn.all(_SELECT + " WHERE tenant_id = ? ORDER BY mcp_server, tool_name", (tenant_id,))
    else:
        found = conn.all(_SELECT + " WHERE tenant_id = ? AND mcp_server = ? ORDER BY tool_name",
                         (tenant_id, mcp_server))
    return [ToolRow(*r) for r in found]


def one(db: Database, tenant_id: str, mcp_server: str, tool_name: str) -> ToolRow | None:
    with db.read() as conn:
        r = conn.one(_SELECT + " WHERE tenant_id = ? AND mcp_server = ? AND tool_name = ?",
                     (tenant_id, mcp_server, tool_name))
    return None if r is None else ToolRow(*r)


def insert(conn: Connection, row: ToolRow) -> bool:
    """Insert unless another process inserted the tool first (False then)."""
    sql = (f"INSERT INTO mcp_tools ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
           " ON CONFLICT (tenant_id, mcp_server, tool_name) DO NOTHING")
    return bool(conn.execute(sql, tuple(getattr(row, c) for c in COLUMNS)).rowcount)


def update(conn: Connection, row: ToolRow) -> None:
    sets = ", ".join(f"{c} = ?" for c in _VALUES)
    conn.execute(f"UPDATE mcp_tools SET {sets} WHERE tenant_id = ? AND mcp_server = ? AND tool_name = ?",
                 (*(getattr(row, c) for c in _VALUES), row.tenant_id, row.mcp_server, row.tool_name))


def save(db: Database, tenant_id: str, mcp_server: str, change: Any) -> list[ToolRow]:
    """In one transaction: read the server's rows, let `change(conn, rows_by_tool)` insert or
    update them, and return the rows after it."""
    with db.transaction() as conn:
        existing = {r.tool_name: r for r in _rows(conn, tenant_id, mcp_server)}
        change(conn, existing)
        return _rows(conn, tenant_id, mcp_server)


def flag_rows(db: Database, tenant_id: str) -> list[ToolRow]:
    """Every tool of the tenant (the enforce cache is built from them)."""
    return rows(db, tenant_id)
