"""Who is asking: a browser login (cookie + CSRF token) or a script's API key (Bearer)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from thoth.server.dashboard.users import ROLE_RANK, User

COOKIE = "thoth_session"
LOGIN_CSRF_COOKIE = "thoth_login_csrf"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Principal:
    name: str  # shown in the header and recorded as the resolver of approvals
    tenant_id: str
    role: str
    via: str  # "cookie" or "key"
    csrf_token: str | None = None

    def can(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]

    @property
    def actor(self) -> str:
        return f"user:{self.name}" if self.via == "cookie" else f"key:{self.name}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_login(db: Any, user: User) -> str:
    """Record a login; returns the cookie value (a random token, stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    created = time.time()
    with db.transaction() as conn:
        conn.execute("DELETE FROM dashboard_logins WHERE expires_at < ?", (created,))
        conn.execute(
            "INSERT INTO dashboard_logins (token_hash, username, csrf_token, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (_digest(token), user.username, secrets.token_urlsafe(24), created, created + SESSION_SECONDS))
    return token


def end_login(db: Any, token: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM dashboard_logins WHERE token_hash = ?", (_digest(token),))


def from_cookie(db: Any, token: str) -> Principal | None:
    with db.read() as conn:
        r = conn.one(
            "SELECT u.username, u.tenant_id, u.role, l.csrf_token FROM dashboard_logins l"
            " JOIN dashboard_users u ON u.username = l.username"
            " WHERE l.token_hash = ? AND l.expires_at > ? AND u.disabled_at IS NULL",
            (_digest(token), time.time()))
    return Principal(r[0], r[1], r[2], "cookie", r[3]) if r else None


def from_api_key(store: Any, key: str) -> Principal | None:
    """An API key of role viewer, approver or admin (sdk and ingest keys cannot read pages)."""
    info = store.lookup_key(key)
    if info is None or info.revoked or info.role not in ROLE_RANK:
        return None
    return Principal(info.key_id, info.tenant_id, info.role, "key")


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
