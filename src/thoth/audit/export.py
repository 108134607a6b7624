"""The export file an auditor verifies offline: JSON Lines, one object a line.

    {"kind": "thoth-audit-export", "version": 1, "tenant_id": "...", "exported_at": "..."}
    {"kind": "event", "chain_index": 0, "previous_hash": "...", "hash": "...", "body": "...", "ingest_key_id": null}
    ...
    {"kind": "head", "chain_index": 41, "hash": "...", "signature": "...", "public_key": "..."}

`body` is the stored canonical JSON as a string, exactly as hashed; the head line is absent
when the tenant has no signed head. Standard library only (see thoth.audit.verify).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from thoth.audit.verify import Head, Row

FORMAT = "thoth-audit-export"
VERSION = 1


class ExportError(ValueError):
    """The file is not a readable Thoth audit export (says which line and why)."""


@dataclass
class Export:
    tenant_id: str
    rows: list[Row] = field(default_factory=list)
    head: Head | None = None
    exported_at: str | None = None


def export_lines(tenant_id: str, rows: Iterable[Row], head: Head | None, exported_at: str) -> Iterator[str]:
    """The lines of an export (each ending in a newline)."""
    yield _line({"kind": FORMAT, "version": VERSION, "tenant_id": tenant_id, "exported_at": exported_at})
    for index, prev, h, body, key_id in rows:
        yield _line({"kind": "event", "chain_index": index, "previous_hash": prev, "hash": h, "body": body,
                     "ingest_key_id": key_id})
    if head is not None:
        index, h, sig, pub = head
        yield _line({"kind": "head", "chain_index": index, "hash": h, "signature": sig, "public_key": pub})


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def read_export(fh: IO[str]) -> Export:
    """Parse an export; ExportError on anything that is not one (never a traceback)."""
    export: Export | None = None
    for n, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ExportError(f"line {n}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ExportError(f"line {n}: expected a JSON object")
        kind = obj.get("kind")
        if export is None:
            export = _header(n, obj)
        elif kind == "event":
            if export.head is not None:
                raise ExportError(f"line {n}: an event after the head line")
            export.rows.append((_int(n, obj, "chain_index"), _str(n, obj, "previous_hash"), _str(n, obj, "hash"),
                                _str(n, obj, "body"), _opt_str(n, obj, "ingest_key_id")))
        elif kind == "head":
            if export.head is not None:
                raise ExportError(f"line {n}: a second head line")
            export.head = (_int(n, obj, "chain_index"), _str(n, obj, "hash"), _opt_str(n, obj, "signature"),
                           _opt_str(n, obj, "public_key"))
        else:
            raise ExportError(f"line {n}: unknown kind {kind!r}")
    if export is None:
        raise ExportError("empty file: no export header")
    return export


def _header(n: int, obj: dict[str, Any]) -> Export:
    if obj.get("kind") != FORMAT:
        raise ExportError(f"line {n}: not a Thoth audit export (first line's kind is not {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise ExportError(f"line {n}: export version {obj.get('version')!r}; this verifier reads {VERSION}")
    exported_at = obj.get("exported_at")
    return Export(_str(n, obj, "tenant_id"), exported_at=exported_at if isinstance(exported_at, str) else None)


def _str(n: int, obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ExportError(f"line {n}: {key} must be a string")
    return value


def _opt_str(n: int, obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ExportError(f"line {n}: {key} must be a string or null")
    return value


def _int(n: int, obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ExportError(f"line {n}: {key} must be an integer")
    return value
