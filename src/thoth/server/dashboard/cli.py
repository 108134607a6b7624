"""`thoth users create|list|set-password|disable|unlock`: manage dashboard logins from the shell."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("users", help="dashboard users (local logins)")
    p.add_argument("--database-url", default=None, help="defaults to THOTH_DATABASE_URL or THOTH_HOME's SQLite")
    sub = p.add_subparsers(dest="users_command", required=True)
    c = sub.add_parser("create", help="create a user; prints a generated password unless one is given")
    c.add_argument("username")
    c.add_argument("--tenant", required=True)
    c.add_argument("--role", choices=("viewer", "approver", "admin"), default="viewer")
    c.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    c.set_defaults(handler=_create)
    ls = sub.add_parser("list", help="users of a tenant")
    ls.add_argument("--tenant", required=True)
    ls.set_defaults(handler=_list)
    pw = sub.add_parser("set-password", help="set a new password (signs the user out everywhere)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(handler=_set_password)
    d = sub.add_parser("disable", help="disable a user")
    d.add_argument("username")
    d.add_argument("--tenant", required=True)
    d.set_defaults(handler=_disable)
    u = sub.add_parser("unlock", help="end a user's sign-in lockout after failed passwords")
    u.add_argument("username")
    u.set_defaults(handler=_unlock)


def _db(args: argparse.Namespace) -> Any:
    from thoth.server.db import Database
    from thoth.server.migrate import upgrade
    from thoth.server.settings import default_database_url

    url = args.database_url or os.environ.get("THOTH_DATABASE_URL") or default_database_url()
    upgrade(url)  # the dashboard's tables included (migration 0007)
    db = Database(url)
    return db


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated)"""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("password (empty to generate one): ")
        if first:
            if getpass.getpass("again: ") != first:
                raise SystemExit("passwords differ")
            return first, False
    import secrets

    return secrets.token_urlsafe(15), True


def _create(args: argparse.Namespace) -> int:
    from thoth.server.dashboard.users import UserError, create_user

    db = _db(args)
    password, generated = _password(args)
    try:
        create_user(db, args.username, password, args.role, args.tenant)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {args.role} {args.username} in tenant {args.tenant}")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from thoth.server.dashboard.users import list_users

    for u in list_users(_db(args), args.tenant):
        print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    from thoth.server.dashboard.users import UserError, get_user, set_password

    db = _db(args)
    if get_user(db, args.username) is None:
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 2
    password, generated = _password(args)
    try:
        set_password(db, args.username, password)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"password of {args.username} changed" + (f": {password}" if generated else ""))
    return 0


def _disable(args: argparse.Namespace) -> int:
    from thoth.server.dashboard.users import disable_user

    if not disable_user(_db(args), args.tenant, args.username):
        print(f"error: no active user {args.username!r} in tenant {args.tenant}", file=sys.stderr)
        return 2
    print(f"disabled {args.username}")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from thoth.server.dashboard.throttle import unlock

    unlock(_db(args), args.username)
    print(f"sign-in failures of {args.username} cleared")
    return 0


# thoth.cli loads `register(subparsers)` from each module listed in its _COMMAND_MODULES.
register = register_cli
