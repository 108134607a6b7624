"""Local dashboard users: argon2id password hashes, roles, the first admin."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Humans get the three reading/deciding roles of control-plane.md; `sdk` is for agents only.
USER_ROLES = ("viewer", "approver", "admin")
ROLE_RANK = {"viewer": 1, "approver": 2, "admin": 3}
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """Bad input for a user operation; the message is safe to show."""


@dataclass(frozen=True)
class User:
    username: str
    tenant_id: str
    role: str
    created_at: float
    disabled: bool


def _row(r: Any) -> User:
    return User(r[0], r[1], r[2], float(r[3]), r[4] is not None)


def validate(username: str, role: str, password: str | None) -> None:
    if not _USERNAME.match(username or ""):
        raise UserError("username: letters, digits and . _ @ - only, up to 100 characters")
    if role not in USER_ROLES:
        raise UserError(f"role must be one of {', '.join(USER_ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")


def create_user(db: Any, username: str, password: str, role: str, tenant_id: str) -> User:
    validate(username, role, password)
    if not tenant_id:
        raise UserError("tenant is required")
    created = time.time()
    with db.transaction() as conn:
        if conn.one("SELECT 1 FROM dashboard_users WHERE username = ?", (username,)):
            raise UserError(f"user {username!r} already exists")
        conn.execute(
            "INSERT INTO dashboard_users (username, tenant_id, role, password_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (username, tenant_id, role, _hasher.hash(password), created))
    return User(username, tenant_id, role, created, False)


def get_user(db: Any, username: str) -> User | None:
    with db.read() as conn:
        r = conn.one("SELECT username, tenant_id, role, created_at, disabled_at FROM dashboard_users"
                     " WHERE username = ?", (username,))
    return _row(r) if r else None


def list_users(db: Any, tenant_id: str) -> list[User]:
    with db.read() as conn:
        rows = conn.all("SELECT username, tenant_id, role, created_at, disabled_at FROM dashboard_users"
                        " WHERE tenant_id = ? ORDER BY username", (tenant_id,))
    return [_row(r) for r in rows]


def authenticate(db: Any, username: str, password: str) -> User | None:
    """The user when the password matches and the account is enabled, else None."""
    with db.read() as conn:
        r = conn.one("SELECT username, tenant_id, role, created_at, disabled_at, password_hash"
                     " FROM dashboard_users WHERE username = ?", (username,))
    try:
        _hasher.verify(r[5] if r else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if r is None or r[4] is not None:
        return None
    if _hasher.check_needs_rehash(r[5]):
        with db.transaction() as conn:
            conn.execute("UPDATE dashboard_users SET password_hash = ? WHERE username = ?",
                         (_hasher.hash(password), username))
    return _row(r)


def set_role(db: Any, tenant_id: str, username: str, role: str) -> bool:
    """False when the tenant has no such user (nothing changed)."""
    validate(username, role, None)
    with db.transaction() as conn:
        return bool(conn.execute("UPDATE dashboard_users SET role = ? WHERE username = ? AND tenant_id = ?",
                                 (role, username, tenant_id)).rowcount)


def set_password(db: Any, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")
    with db.transaction() as conn:
        conn.execute("UPDATE dashboard_users SET password_hash = ? WHERE username = ?",
                     (_hasher.hash(password), username))
        conn.execute("DELETE FROM dashboard_logins WHERE username = ?", (username,))


def disable_user(db: Any, tenant_id: str, username: str) -> bool:
    with db.transaction() as conn:
        changed = conn.execute(
            "UPDATE dashboard_users SET disabled_at = ? WHERE username = ? AND tenant_id = ?"
            " AND disabled_at IS NULL", (time.time(), username, tenant_id)).rowcount
        if changed:  # only then: another tenant's admin must not sign this user out
            conn.execute("DELETE FROM dashboard_logins WHERE username = ?", (username,))
    return bool(changed)


def ensure_first_admin(db: Any, tenant_id: str = "default") -> tuple[str, str] | None:
    """Create user `admin` with a random password when no user exists yet.

    Returns (username, password) exactly once, for `thoth serve` to print; None afterwards.
    """
    with db.read() as conn:
        if conn.one("SELECT 1 FROM dashboard_users LIMIT 1"):
            return None
    password = secrets.token_urlsafe(15)
    try:
        create_user(db, "admin", password, "admin", tenant_id)
    except Exception:  # another process created it first (unique violation)
        return None
    return "admin", password
