"""Login throttle: consecutive failed sign-ins lock a user name, a client address or a known
browser out for a while, doubling up to a cap. Why these numbers: docs/adr/0104-dashboard-login-throttle.md.

State lives in the database (`dashboard_login_throttle`), so all server processes sharing a
PostgreSQL database count the same attempts. An attempt is charged *before* the password is
checked, in one locking transaction: a burst of parallel requests cannot all slip past the
check before the first failure is written. A success takes its charge back.

Counters:
- `user`: attempts for a user name from browsers it has not signed in from before. A success
  resets it.
- `address`: attempts from a client address (IPv6: its /64), any user name; a higher limit,
  since many people may share one address behind a NAT. A success takes back only its own
  charge: signing in to one account must not wipe a password-spraying address's record.
- `device`: attempts for a user name from a browser that signed in as that user before (the
  `thoth_device` cookie). Such a browser is not subject to the `user` and `address` counters,
  only to its own, so nobody can keep a user out of a browser they already use by failing on
  purpose; an attacker without that cookie still meets the user's lockout.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("thoth.server.dashboard")

DEVICE_COOKIE = "thoth_device"
DEVICE_SECONDS = 90 * 86400
DEVICES_PER_USER = 20  # newest kept; older ones are forgotten
FORGET_SECONDS = 3600  # a counter starts again after an hour without failures
KEEP_ATTEMPTS_SECONDS = 30 * 86400
MAX_SUBJECT = 200


@dataclass(frozen=True)
class Rules:
    max_failures: int = 5
    max_failures_per_address: int = 20
    lockout_seconds: float = 60.0
    lockout_max_seconds: float = 900.0

    @classmethod
    def of(cls, settings: Any) -> Rules:
        if settings is None:
            return cls()
        return cls(int(getattr(settings, "login_max_failures", 5)),
                   int(getattr(settings, "login_max_failures_per_address", 20)),
                   float(getattr(settings, "login_lockout_seconds", 60.0)),
                   float(getattr(settings, "login_lockout_max_seconds", 900.0)))

    def lockout(self, failures: int, limit: int) -> float:
        """Seconds locked after the failures-th consecutive failure: none below the limit, then
        the first lockout, doubling with every further failure, capped."""
        if failures < limit:
            return 0.0
        return min(self.lockout_max_seconds, self.lockout_seconds * 2 ** min(failures - limit, 30))


@dataclass
class Ticket:
    """One admitted attempt: what it charged, so a success can take the charge back."""

    username: str
    client: str
    device: str | None  # hash of a known device's token, for this user
    # (scope, subject) -> (locked_until before the charge, locked_until after it)
    charged: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @property
    def locks(self) -> bool:
        """This attempt, if it fails, starts (or extends) a lockout."""
        return any(after > before for before, after in self.charged.values())


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Throttle:
    def __init__(self, db: Any, rules: Rules) -> None:
        self.db = db
        self.rules = rules

    def _subjects(self, username: str, address_key: str, device: str | None) -> list[tuple[str, str, int]]:
        # Always locked in this order (user, then address), so two transactions never wait on
        # each other in a cycle.
        if device is not None:
            return [("device", device, self.rules.max_failures)]
        return [("user", username[:MAX_SUBJECT], self.rules.max_failures),
                ("address", address_key[:MAX_SUBJECT], self.rules.max_failures_per_address)]

    def admit(self, username: str, client: str, address_key: str, device: str | None) -> Ticket | float:
        """A Ticket when the attempt may check its password (it is charged as a failure until
        `succeeded`), else the seconds until one may."""
        ticket = Ticket(username[:MAX_SUBJECT], client[:100], device)
        now = time.time()
        with self.db.transaction() as conn:
            rows = []
            for scope, subject, limit in self._subjects(username, address_key, device):
                conn.execute("INSERT INTO dashboard_login_throttle (scope, subject, failures, last_failed_at,"
                             " locked_until) VALUES (?, ?, 0, 0, 0) ON CONFLICT DO NOTHING", (scope, subject))
                r = conn.one("SELECT failures, last_failed_at, locked_until FROM dashboard_login_throttle"
                             " WHERE scope = ? AND subject = ?" + conn.dialect.for_update,
                             (scope, subject))
                rows.append((scope, subject, limit, int(r[0]), float(r[1]), float(r[2])))
            wait = max(locked - now for *_, locked in rows)
            if wait > 0:
                return wait
            for scope, subject, limit, failures, last_failed, locked in rows:
                failures = (0 if now - last_failed > FORGET_SECONDS else failures) + 1
                until = now + self.rules.lockout(failures, limit) if failures >= limit else locked
                conn.execute("UPDATE dashboard_login_throttle SET failures = ?, last_failed_at = ?, locked_until = ?"
                             " WHERE scope = ? AND subject = ?", (failures, now, until, scope, subject))
                ticket.charged[(scope, subject)] = (locked, until)
        return ticket

    def succeeded(self, ticket: Ticket) -> None:
        """The password matched: reset the user's (or device's) counter, take back the
        address's charge, record the attempt."""
        with self.db.transaction() as conn:
            for (scope, subject), (before, after) in ticket.charged.items():
                if scope == "address":
                    # Only if no other attempt charged it since (else its lock stands).
                    conn.execute("UPDATE dashboard_login_throttle SET failures = failures - 1, locked_until = ?"
                                 " WHERE scope = ? AND subject = ? AND locked_until = ? AND failures > 0",
                                 (before, scope, subject, after))
                else:
                    conn.execute("DELETE FROM dashboard_login_throttle WHERE scope = ? AND subject = ?",
                                 (scope, subject))
            # A success resets the user's counter, whichever browser it came from.
            conn.execute("DELETE FROM dashboard_login_throttle WHERE scope = 'user' AND subject = ?",
                         (ticket.username,))
            self._record(conn, ticket, True)

    def failed(self, ticket: Ticket) -> None:
        with self.db.transaction() as conn:
            self._record(conn, ticket, False)
        if ticket.locks:
            log.warning("dashboard login: %s locked out after failed sign-ins (user %r, client %s)",
                        "this browser" if ticket.device else "user name and/or address", ticket.username,
                        ticket.client)

    def _record(self, conn: Any, ticket: Ticket, ok: bool) -> None:
        now = time.time()
        conn.execute("DELETE FROM dashboard_login_attempts WHERE attempted_at < ?", (now - KEEP_ATTEMPTS_SECONDS,))
        conn.execute("DELETE FROM dashboard_login_throttle WHERE locked_until < ? AND last_failed_at < ?",
                     (now, now - FORGET_SECONDS))
        conn.execute("INSERT INTO dashboard_login_attempts (attempted_at, username, client, ok, known_device)"
                     " VALUES (?, ?, ?, ?, ?)", (now, ticket.username, ticket.client, int(ok),
                                                 int(ticket.device is not None)))

    # ---- known devices ---------------------------------------------------------------------

    def known_device(self, token: str | None, username: str) -> str | None:
        """The device's hash when `token` is a live device cookie of this user, else None."""
        if not token:
            return None
        h = digest(token)
        with self.db.read() as conn:
            r = conn.one("SELECT 1 FROM dashboard_devices WHERE token_hash = ? AND username = ? AND expires_at > ?",
                         (h, username[:MAX_SUBJECT], time.time()))
        return h if r else None

    def remember_device(self, username: str) -> str:
        """A new device token for this user (the cookie's value; only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM dashboard_devices WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO dashboard_devices (token_hash, username, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?)", (digest(token), username, now, now + DEVICE_SECONDS))
            old = conn.all("SELECT token_hash FROM dashboard_devices WHERE username = ?"
                           " ORDER BY created_at DESC " + conn.dialect.offset(), (username, DEVICES_PER_USER))
            for (h,) in old:
                conn.execute("DELETE FROM dashboard_devices WHERE token_hash = ?", (h,))
        return token


def unlock(db: Any, username: str) -> int:
    """Clear a user name's lockout and counters (`thoth users unlock`); rows removed."""
    with db.transaction() as conn:
        return int(conn.execute("DELETE FROM dashboard_login_throttle WHERE scope = 'user' AND subject = ?",
                                (username[:MAX_SUBJECT],)).rowcount or 0)
