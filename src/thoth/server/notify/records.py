"""Delivery records of notifications, replay nonces and the decision context a message shows.

Every delivery outcome is written with an APPROVAL_NOTIFIED event in the same transaction, so
the session timeline and the audit chain show what was sent where, and what failed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from thoth.server.notify import rules
from thoth.server.store import Store, iso

_COLUMNS = ("notification_id, tenant_id, approval_id, channel, kind, status, attempts, error, target,"
            " outcome_status, created_at, updated_at")


def _row(r: Any) -> dict[str, Any]:
    return {"notification_id": r[0], "tenant_id": r[1], "approval_id": r[2], "channel": r[3], "kind": r[4],
            "status": r[5], "attempts": r[6], "error": r[7], "target": orjson.loads(r[8]) if r[8] else None,
            "outcome_status": r[9], "created_at": iso(r[10]), "updated_at": iso(r[11])}


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def create(self, approval: dict[str, Any], channel: str, kind: str) -> str:
        nid = f"ntf_{uuid.uuid4().hex}"
        ts = time.time()
        with self.db.transaction() as conn:
            conn.execute(f"INSERT INTO notifications ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (nid, approval["tenant_id"], approval["approval_id"], channel, kind, "queued", 0, None,
                          None, None, ts, ts))
        return nid

    def delivered(self, nid: str, approval: dict[str, Any], channel: str, kind: str, ok: bool, attempts: int,
                  error: str | None, target: dict[str, Any] | None) -> None:
        ts = time.time()
        status = "sent" if ok else "failed"
        with self.db.transaction() as conn:
            conn.execute("UPDATE notifications SET status = ?, attempts = ?, error = ?, target = ?, updated_at = ?"
                         " WHERE notification_id = ?",
                         (status, attempts, error, orjson.dumps(target).decode() if target else None, ts, nid))
            self.store.append_events(conn, approval["tenant_id"], [rules.approval_event(
                "APPROVAL_NOTIFIED", approval, ts, channel=channel, channel_kind=kind, delivery_status=status,
                attempts=attempts, error=error, notification_id=nid)])

    def for_approval(self, tenant_id: str, approval_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.all(f"SELECT {_COLUMNS} FROM notifications WHERE approval_id = ? AND tenant_id = ?"
                            " ORDER BY created_at", (approval_id, tenant_id))
        return [_row(r) for r in rows]

    def recent(self, tenant_id: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT {_COLUMNS} FROM notifications WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        if status:
            sql += " AND status = ?"
            params.append(status)
        with self.db.read() as conn:
            rows = conn.all(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit])
        return [_row(r) for r in rows]

    def tenant_of(self, approval_id: str, kind: str, channel: str | None = None) -> str | None:
        """The tenant of an approval that was sent to this kind of channel (the only ones a callback may touch)."""
        sql = "SELECT tenant_id FROM notifications WHERE approval_id = ? AND kind = ?"
        params: list[Any] = [approval_id, kind]
        if channel is not None:
            sql += " AND channel = ?"
            params.append(channel)
        with self.db.read() as conn:
            row = conn.one(sql + " LIMIT 1", params)
        return row[0] if row else None

    def needing_outcome(self, kinds: tuple[str, ...], limit: int = 100) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(notification, approval) pairs whose approval is decided but whose message (sent to a
        channel of one of these kinds) does not say so yet."""
        if not kinds:
            return []
        with self.db.read() as conn:
            rows = conn.all(
                f"SELECT {', '.join('n.' + c.strip() for c in _COLUMNS.split(','))}, a.approval_id, a.tenant_id"
                " FROM notifications n JOIN approvals a ON a.approval_id = n.approval_id"
                " WHERE n.status = 'sent' AND n.outcome_status IS NULL"
                f" AND n.kind IN ({', '.join('?' for _ in kinds)})"
                " AND a.status <> 'pending' LIMIT ?", (*kinds, limit))
        out = []
        for r in rows:
            approval = self.store.approval(r[13], r[12])
            if approval is not None:
                out.append((_row(r[:12]), approval))
        return out

    def claim_outcome(self, nid: str) -> bool:
        """Take the job of posting the outcome (one process, one time)."""
        with self.db.transaction() as conn:
            return bool(conn.execute("UPDATE notifications SET outcome_status = 'sending', updated_at = ?"
                                     " WHERE notification_id = ? AND outcome_status IS NULL",
                                     (time.time(), nid)).rowcount)

    def outcome_done(self, nid: str, ok: bool, error: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE notifications SET outcome_status = ?, error = COALESCE(?, error), updated_at = ?"
                         " WHERE notification_id = ?", ("sent" if ok else "failed", error, time.time(), nid))

    def first_use(self, nonce: str, keep_seconds: float) -> bool:
        """Record a signed request's signature; False when it was seen before (a replay)."""
        ts = time.time()
        with self.db.transaction() as conn:
            fresh = conn.execute("INSERT INTO notify_nonces (nonce, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                 (nonce, ts)).rowcount
            conn.execute("DELETE FROM notify_nonces WHERE seen_at < ?", (ts - keep_seconds,))
        return bool(fresh)

    def decision_context(self, decision_id: str | None) -> dict[str, Any]:
        if not decision_id:
            return {}
        with self.db.read() as conn:
            row = conn.one("SELECT matched_rule_ids, risk_score, reason, user_id FROM decisions"
                           " WHERE decision_id = ?", (decision_id,))
        if row is None:
            return {}
        return {"matched_rule_ids": orjson.loads(row[0]) if row[0] else [], "risk_score": row[1],
                "reason": row[2], "user_id": row[3]}
