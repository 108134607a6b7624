"""`thoth audit verify` and `thoth audit export`.

This module imports without the server: `verify --export FILE` checks an exported chain with the
SDK's dependencies only (plus `cryptography` for the head signature). The database commands
import the server when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from thoth.audit.export import ExportError, export_lines, read_export
from thoth.audit.verify import SignatureCheckUnavailable, verify_chain


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="audit chain tools")
    ausub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = ausub.add_parser(
        "verify", help="verify a tenant's event hash chain, in the database or in an export (exit 1 when broken)")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--tenant", help="verify this tenant's chain in the database")
    source.add_argument("--export", metavar="FILE",
                        help="verify an export made by `thoth audit export` (offline: no server, no database)")
    verify.add_argument("--public-key", metavar="HEX",
                        help="with --export: the server's published Ed25519 public key (hex) the head must be "
                             "signed with; without it, the key named in the export is used")
    _db_arg(verify)
    verify.set_defaults(handler=cmd_verify)
    export = ausub.add_parser("export", help="write a tenant's chain and signed head as JSON Lines")
    export.add_argument("--tenant", required=True)
    export.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    _db_arg(export)
    export.set_defaults(handler=cmd_export)


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None,
                   help="database URL (default: THOTH_DATABASE_URL or SQLite under THOTH_HOME)")


def _fail(message: str, code: int = 2) -> int:
    print(f"thoth: error: {message}", file=sys.stderr)
    return code


def _with_store(fn: Any, args: argparse.Namespace) -> int:
    """Run fn(store) against the database; the server's dependencies are imported only here."""
    try:  # everything _store needs, imported here so a missing extra is one message, not a traceback
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401

        import thoth.server.store  # noqa: F401
        from thoth.server.cli import _guard, _store
    except ModuleNotFoundError as exc:
        return _fail(f"reading the database needs the 'server' extra ({exc}); "
                     "an export can be verified without it: thoth audit verify --export FILE")
    return int(_guard(lambda a: fn(_store(a)))(args))


def _report(tenant_id: str, result: dict[str, Any]) -> int:
    print(json.dumps(result, indent=2))
    if not result["verified"]:
        print(f"audit chain of tenant {tenant_id} is BROKEN", file=sys.stderr)
        return 1
    print(f"audit chain of tenant {tenant_id} verified: {result['records_checked']} records", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.export is None:
        if args.public_key:
            return _fail("--public-key goes with --export (the database check uses the server's own key)")
        return _with_store(lambda store: _report(args.tenant, store.verify_chain(args.tenant)), args)
    return verify_export(args.export, args.public_key)


def verify_export(path: str, public_key: str | None) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            export = read_export(fh)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {path}: {exc}")
    except ExportError as exc:
        return _fail(f"{path}: {exc}")
    try:
        result = verify_chain(export.tenant_id, export.rows, export.head, public_key)
    except SignatureCheckUnavailable as exc:
        return _fail(str(exc))
    result["tenant_id"] = export.tenant_id
    result["exported_at"] = export.exported_at
    result["public_key"] = public_key or (export.head[3] if export.head else None)
    result["public_key_source"] = "given" if public_key else "export"
    if result["verified"] and export.rows and not public_key:
        print("thoth: note: the head's signature was checked with the key named in the export itself; "
              "pass --public-key with the server's published key to rule out a re-signed chain", file=sys.stderr)
    return _report(export.tenant_id, result)


def cmd_export(args: argparse.Namespace) -> int:
    def write(store: Any) -> int:
        rows, head = store.chain_records(args.tenant)
        lines = export_lines(args.tenant, rows, head, datetime.now(UTC).isoformat())
        if args.out is None:
            sys.stdout.writelines(lines)
        else:
            try:
                with open(args.out, "w", encoding="utf-8") as fh:
                    fh.writelines(lines)
            except OSError as exc:
                return _fail(f"cannot write {args.out}: {exc}", 1)
        print(f"exported {len(rows)} records of tenant {args.tenant}", file=sys.stderr)
        return 0
    return _with_store(write, args)


def main(argv: list[str] | None = None) -> int:
    """`python -m thoth.audit verify FILE [--public-key HEX]`: the offline verifier alone."""
    parser = argparse.ArgumentParser(prog="python -m thoth.audit",
                                     description="Verify a Thoth audit export offline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verify = sub.add_parser("verify", help="verify an export made by `thoth audit export` (exit 1 when broken)")
    verify.add_argument("file")
    verify.add_argument("--public-key", metavar="HEX", help="the server's published Ed25519 public key (hex)")
    args = parser.parse_args(argv)
    return verify_export(args.file, args.public_key)
