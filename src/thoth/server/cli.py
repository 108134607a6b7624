"""`thoth serve`, `thoth demo`, `thoth keys`, `thoth approvals` (`thoth audit`: thoth.audit.cli)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from thoth.server.db import Database, DatabaseUnavailable
from thoth.server.settings import Settings, default_database_url


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the Thoth server (enforcer, ingest, approvals, API)")
    _serve_args(serve)
    serve.add_argument("--demo", action="store_true", help="seed a demo tenant, policy and sessions")
    serve.set_defaults(handler=cmd_serve)

    demo = subparsers.add_parser("demo", help="same as `thoth serve --demo`")
    _serve_args(demo)
    demo.set_defaults(handler=cmd_serve, demo=True)

    keys = subparsers.add_parser("keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = ksub.add_parser("create", help="create a tenant (if needed) and an API key")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=("sdk", "approver", "viewer", "admin", "ingest"))
    create.add_argument("--name")
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    _db_arg(create)
    create.set_defaults(handler=cmd_keys_create)
    klist = ksub.add_parser("list", help="list keys (never their secrets)")
    klist.add_argument("--tenant")
    klist.add_argument("--json", action="store_true")
    _db_arg(klist)
    klist.set_defaults(handler=cmd_keys_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.add_argument("--tenant")
    _db_arg(revoke)
    revoke.set_defaults(handler=cmd_keys_revoke)

    approvals = subparsers.add_parser("approvals", help="list and resolve step-up approvals")
    asub = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    alist = asub.add_parser("list", help="list approvals")
    alist.add_argument("--tenant")
    alist.add_argument("--status", choices=("pending", "approved", "denied", "expired"), default="pending")
    alist.add_argument("--json", action="store_true")
    _db_arg(alist)
    alist.set_defaults(handler=cmd_approvals_list)
    for action in ("approve", "deny"):
        p = asub.add_parser(action, help=f"{action} a pending approval")
        p.add_argument("approval_id")
        p.add_argument("--reason")
        p.add_argument("--tenant")
        _db_arg(p)
        p.set_defaults(handler=cmd_approvals_resolve, approve=(action == "approve"))


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None,
                   help="database URL (default: THOTH_DATABASE_URL or SQLite under THOTH_HOME)")


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (default 1; use PostgreSQL for more than one, see docs/performance.md)")
    p.add_argument("--secure-cookies", action="store_true", default=None,
                   help="dashboard cookies always Secure (serving behind TLS); env THOTH_SECURE_COOKIES=1")
    p.add_argument("--trusted-proxy", action="append", metavar="ADDR[/BITS]", default=None,
                   help="a reverse proxy whose X-Forwarded-For/-Proto the dashboard login believes; repeatable "
                        "(replaces env THOTH_TRUSTED_PROXIES, comma-separated)")
    p.add_argument("--metrics-tenant-labels", action="store_true", default=None,
                   help="list per-tenant series (tenant ids) on the unauthenticated /metrics; "
                        "env THOTH_METRICS_TENANT_LABELS=1")
    _db_arg(p)


def _fail(message: str) -> int:
    print(f"thoth: error: {message}", file=sys.stderr)
    return 1


def _store(args: argparse.Namespace) -> Any:
    from thoth.audit.sign import Signer
    from thoth.server import migrate
    from thoth.server.store import Store

    try:
        settings = Settings(database_url=args.database_url or default_database_url())
    except ValueError as exc:  # a malformed THOTH_* setting in the environment: said in one line
        raise SettingsProblem(str(exc)) from None
    migrate.upgrade(settings.database_url)
    signer = Signer(settings.key_path) if settings.key_path.exists() else None
    return Store(Database(settings.database_url), signer)


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except (DatabaseUnavailable, SettingsProblem) as exc:
            return _fail(str(exc))
    return run


class SettingsProblem(Exception):
    """A server setting from the environment that cannot be used (the message says which)."""


def port_free(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


@_guard
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from thoth.server.app import create_app
    from thoth.server.db import redact

    problem = port_free(args.host, args.port)
    if problem:
        return _fail(f"cannot listen on {args.host}:{args.port}: {problem} (is another server running? "
                     "pick another port with --port)")
    try:
        settings = Settings(database_url=args.database_url or default_database_url(), host=args.host,
                            port=args.port, demo=bool(getattr(args, "demo", False)), **_flag_settings(args))
    except ValueError as exc:
        return _fail(str(exc))
    if settings.mcp_pins_file:  # pinned before the first request can report a tool list
        from thoth.server.mcp_pins import pin_file

        try:
            pin_file(settings.database_url, settings.mcp_pins_file, None)
        except ValueError as exc:
            return _fail(f"THOTH_MCP_PINS_FILE: {exc}")
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    if workers > 1 and settings.demo:
        return _fail("--demo runs one worker; drop --workers")
    url = f"http://{args.host}:{args.port}"
    # The hot path wants uvloop + httptools (measured ~1.6x asyncio + h11) and no access log;
    # uvicorn[standard] installs both except where uvloop does not exist (Windows).
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    http = "httptools" if importlib.util.find_spec("httptools") else "auto"
    # No proxy-header rewriting: nothing reads the client address, and it costs every request.
    fast = {"loop": loop, "http": http, "lifespan": "on", "log_level": "warning", "access_log": False,
            "proxy_headers": False}
    if workers > 1:
        # Each worker process builds its own app from the environment (uvicorn's factory mode).
        import os

        from thoth.server import migrate

        migrate.upgrade(settings.database_url)  # once, before the workers race to do it
        os.environ["THOTH_DATABASE_URL"] = settings.database_url
        os.environ["THOTH_SECURE_COOKIES"] = "1" if settings.secure_cookies else "0"
        os.environ["THOTH_TRUSTED_PROXIES"] = ",".join(settings.trusted_proxies)
        os.environ["THOTH_METRICS_TENANT_LABELS"] = "1" if settings.metrics_tenant_labels else "0"
        print(f"Thoth server on {url}  ({workers} workers, database: {redact(settings.database_url)})", flush=True)
        try:
            uvicorn.run("thoth.server.app:create_app", factory=True, host=args.host, port=args.port,
                        workers=workers, **fast)  # type: ignore[arg-type]
        except OSError as exc:
            return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 0
    from thoth.server.notify.config import NotifyConfigError

    try:
        app = create_app(settings)
    except NotifyConfigError as exc:
        return _fail(f"invalid notification config: {exc}")
    print(f"Thoth server on {url}  (database: {redact(settings.database_url)})", flush=True)
    print(f"  API docs {url}/docs   metrics {url}/metrics", flush=True)
    if settings.demo:
        from thoth.server.demo import start_demo

        start_demo(app.core, url)
    config = uvicorn.Config(app, host=args.host, port=args.port, **fast)  # type: ignore[arg-type]
    try:
        uvicorn.Server(config).run()
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    return 0


def _flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given as `thoth serve` flags; the others come from the environment."""
    out: dict[str, Any] = {}
    if getattr(args, "secure_cookies", None):
        out["secure_cookies"] = True
    if getattr(args, "trusted_proxy", None):
        out["trusted_proxies"] = tuple(args.trusted_proxy)
    if getattr(args, "metrics_tenant_labels", None):
        out["metrics_tenant_labels"] = True
    return out


@_guard
def cmd_keys_create(args: argparse.Namespace) -> int:
    key = _store(args).create_key(args.tenant, args.role, args.name)
    if args.json:
        print(json.dumps({"tenant_id": key["tenant_id"], "key": key["key"], "role": key["role"],
                          "key_id": key["key_id"]}))
    else:
        print(f"Created {key['role']} key {key['key_id']} for tenant {key['tenant_id']}:")
        print(f"  {key['key']}")
        print("Store it now: it is shown only once.")
    return 0


@_guard
def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = _store(args).list_keys(args.tenant)
    if args.json:
        print(json.dumps(keys))
        return 0
    if not keys:
        print("no keys")
    for k in keys:
        state = "revoked" if k["revoked"] else "active"
        print(f"{k['key_id']}  {k['tenant_id']:<20} {k['role']:<9} {state:<8} {k['prefix']}...  {k['created_at']}")
    return 0


@_guard
def cmd_keys_revoke(args: argparse.Namespace) -> int:
    if not _store(args).revoke_key(args.key_id, args.tenant):
        return _fail(f"no active key {args.key_id}")
    print(f"revoked {args.key_id}")
    return 0


@_guard
def cmd_approvals_list(args: argparse.Namespace) -> int:
    items, _ = _store(args).list_approvals(args.tenant, args.status, limit=500)
    if args.json:
        print(json.dumps([{k: v for k, v in a.items() if not k.startswith("_")} for a in items]))
        return 0
    if not items:
        print(f"no {args.status} approvals")
    for a in items:
        reach = (f"  uses {a['uses']}/{a['allowed_uses']} valid until {a['valid_until']}"
                 if a["status"] == "approved" else f"  expires {a['expires_at']}")
        print(f"{a['approval_id']}  {a['tenant_id']:<16} {a['status']:<8} {a['agent_id']}  {a['tool_name']}"
              f"  args={json.dumps(a['tool_args'])[:80]}{reach}")
    return 0


@_guard
def cmd_approvals_resolve(args: argparse.Namespace) -> int:
    from thoth.server.core import resolution_problem

    resolver = f"cli:{getpass.getuser()}"
    store = _store(args)
    outcome, approval = store.resolve_approval(args.tenant, args.approval_id, args.approve, resolver,
                                               args.reason, "cli")
    if outcome == "not_found" or approval is None:
        return _fail(f"no approval {args.approval_id}")
    problem = resolution_problem(outcome, approval, resolver)
    if problem is not None:
        return _fail(f"approval {args.approval_id}: {problem[1]}")
    if outcome == "partial":
        print(f"{approval['approval_id']}: approved by {len(approval['approvals'])} of "
              f"{approval['required_approvals']}; still pending")
        return 0
    if args.approve:
        _learn_approved(store, approval)
    print(f"{approval['approval_id']}: {approval['status']}")
    return 0


def _learn_approved(store: Any, approval: dict[str, Any]) -> None:
    """The approved call joins its agent's analytics baseline, as when the server resolves it."""
    import time

    from thoth.server.analytics_state import stored_engine

    analytics = stored_engine(store.db, approval["tenant_id"])
    if analytics is None:
        return
    try:
        analytics.observe(approval["agent_id"], approval["tool_name"], approval["tool_args"] or {}, time.time(),
                          "ALLOW", session_id=approval["session_id"])
        analytics.flush()
    except Exception as exc:  # advisory: the approval itself has been recorded
        print(f"thoth: warning: analytics not updated: {exc}", file=sys.stderr)
