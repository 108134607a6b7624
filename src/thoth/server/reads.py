"""The control plane's reads: what the API's GET routes, the metrics and the audit tools ask of
the database. The dashboard's own pages read through thoth.server.dashboard.queries; the write
path (decisions, events, approvals, keys, policies) and the look-ups of the enforce path are
thoth.server.store, whose `Store` extends `Reads` so that one object serves a caller that needs
both (the CLI, the audit tool).

Plain synchronous methods returning dicts, each one bounded read on a pooled connection
(`Database.read`); the control plane runs them in its thread pool.
"""

from __future__ import annotations

from typing import Any

import orjson

from thoth import audit
from thoth.audit.sign import Signer
from thoth.server.db import Database
from thoth.server.records import iso, load_json, now


class Reads:
    def __init__(self, db: Database, signer: Signer | None = None) -> None:
        self.db = db
        self.signer = signer  # whose public key verify_chain trusts

    # ---- tenants, keys and policies --------------------------------------------------------

    def list_keys(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT key_id, tenant_id, role, prefix, name, created_at, revoked_at FROM api_keys"
        params: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = ?"
            params = (tenant_id,)
        with self.db.read() as conn:
            rows = conn.all(sql + " ORDER BY created_at", params)
        return [
            {"key_id": r[0], "tenant_id": r[1], "role": r[2], "prefix": r[3], "name": r[4],
             "created_at": iso(r[5]), "revoked_at": iso(r[6]) if r[6] else None, "revoked": r[6] is not None}
            for r in rows
        ]

    def tenants(self) -> list[str]:
        with self.db.read() as conn:
            return [r[0] for r in conn.all("SELECT tenant_id FROM tenants ORDER BY tenant_id")]

    def policy_versions(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.all("SELECT version, created_at, created_by, comment, active FROM policies"
                            " WHERE tenant_id = ? ORDER BY version DESC", (tenant_id,))
        return [{"version": r[0], "created_at": iso(r[1]), "created_by": r[2], "comment": r[3],
                 "active": bool(r[4])} for r in rows]

    def policy_version(self, tenant_id: str, version: int) -> str | None:
        with self.db.read() as conn:
            row = conn.one("SELECT document FROM policies WHERE tenant_id = ? AND version = ?",
                           (tenant_id, version))
        return row[0] if row else None

    # ---- decisions, sessions, violations ------------------------------------------------

    def session_decisions(self, tenant_id: str, session_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.all(
                "SELECT tool_name, decision, would_decision, reason, reason_code, matched_rule_ids, risk_score,"
                " violation_id, hold_token, decided_at, decision_id, tool_args, enforcement_mode, agent_id"
                " FROM decisions WHERE tenant_id = ? AND session_id = ? ORDER BY decided_at LIMIT ?",
                (tenant_id, session_id, limit))
        return [
            {"tool_name": r[0], "decision": r[1], "would_decision": r[2], "reason": r[3], "reason_code": r[4],
             "matched_rule_ids": load_json(r[5]) or [], "risk_score": r[6], "violation_id": r[7],
             "hold_token": r[8], "decided_at": iso(r[9]), "decision_id": r[10], "tool_args": load_json(r[11]),
             "enforcement_mode": r[12], "agent_id": r[13]}
            for r in rows
        ]

    def list_sessions(self, tenant_id: str, agent_id: str | None, limit: int,
                      cursor: float | None) -> tuple[list[dict[str, Any]], str | None]:
        sql = ("SELECT session_id, agent_id, user_id, started_at, last_event_at, tool_calls, blocked, stepped_up,"
               " risk_score FROM sessions WHERE tenant_id = ?")
        params: list[Any] = [tenant_id]
        if agent_id:
            sql += " AND agent_id = ?"
            params.append(agent_id)
        if cursor is not None:
            sql += " AND last_event_at < ?"
            params.append(cursor)
        sql += " ORDER BY last_event_at DESC LIMIT ?"
        params.append(limit + 1)
        with self.db.read() as conn:
            rows = conn.all(sql, params)
        items = [self._session(r) for r in rows[:limit]]
        next_cursor = repr(rows[limit - 1][4]) if len(rows) > limit else None
        return items, next_cursor

    @staticmethod
    def _session(r: Any) -> dict[str, Any]:
        return {"session_id": r[0], "agent_id": r[1], "user_id": r[2], "started_at": iso(r[3]),
                "last_event_at": iso(r[4]), "tool_calls": r[5], "blocked": r[6], "stepped_up": r[7],
                "risk_score": r[8]}

    def get_session(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.one(
                "SELECT session_id, agent_id, user_id, started_at, last_event_at, tool_calls, blocked, stepped_up,"
                " risk_score FROM sessions WHERE tenant_id = ? AND session_id = ?", (tenant_id, session_id))
        events = self.session_events(tenant_id, session_id)
        if row is None and not events:
            return None
        if row is None:
            session = {"session_id": session_id, "agent_id": events[0].get("agent_id"),
                       "user_id": events[0].get("user_id"), "started_at": events[0].get("ingested_at"),
                       "last_event_at": events[-1].get("ingested_at"), "tool_calls": 0, "blocked": 0,
                       "stepped_up": 0, "risk_score": 0.0}
        else:
            session = self._session(row)
        return {"session": session, "events": events, "decisions": self.session_decisions(tenant_id, session_id)}

    def session_events(self, tenant_id: str, session_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.all("SELECT body, hash, ingest_key_id FROM events WHERE tenant_id = ? AND session_id = ?"
                            " ORDER BY chain_index", (tenant_id, session_id))
        out = []
        for body, h, key_id in rows:
            event = orjson.loads(body)
            event["hash"] = h
            event["ingest_key_id"] = key_id  # the column (chained), never a field a client once sent
            out.append(event)
        return out

    def list_violations(self, tenant_id: str, agent_id: str | None, limit: int,
                        cursor: float | None = None) -> tuple[list[dict[str, Any]], str | None]:
        sql = ("SELECT violation_id, decision, would_decision, reason, reason_code, matched_rule_ids, risk_score,"
               " tool_name, tool_args, agent_id, user_id, session_id, hold_token, enforcement_mode, environment,"
               " decided_at FROM decisions WHERE tenant_id = ? AND violation_id IS NOT NULL")
        params: list[Any] = [tenant_id]
        if agent_id:
            sql += " AND agent_id = ?"
            params.append(agent_id)
        if cursor is not None:
            sql += " AND decided_at < ?"
            params.append(cursor)
        sql += " ORDER BY decided_at DESC LIMIT ?"
        params.append(limit + 1)
        with self.db.read() as conn:
            rows = conn.all(sql, params)
        items = [
            {"violation_id": r[0], "decision": r[1], "would_decision": r[2], "reason": r[3], "reason_code": r[4],
             "matched_rule_ids": load_json(r[5]) or [], "risk_score": r[6], "tool_name": r[7],
             "tool_args": load_json(r[8]), "agent_id": r[9], "user_id": r[10], "session_id": r[11],
             "hold_token": r[12], "enforcement_mode": r[13], "environment": r[14], "decided_at": iso(r[15])}
            for r in rows[:limit]
        ]
        return items, (repr(rows[limit - 1][15]) if len(rows) > limit else None)

    def agent_risk_series(self, tenant_id: str, agent_id: str, bucket_seconds: int = 3600) -> list[dict[str, Any]]:
        """Per-hour call count, violations and mean/max risk of one agent (latest 10,000 decisions)."""
        with self.db.read() as conn:
            rows = conn.all("SELECT decided_at, risk_score, decision, would_decision FROM decisions"
                            " WHERE tenant_id = ? AND agent_id = ? ORDER BY decided_at DESC LIMIT 10000",
                            (tenant_id, agent_id))
        buckets: dict[int, list[Any]] = {}
        for ts, risk, decision, would in rows:
            b = buckets.setdefault(int(ts // bucket_seconds), [0, 0, 0.0, 0.0])
            b[0] += 1
            b[1] += 1 if (would or decision) in ("BLOCK", "STEP_UP") else 0
            b[2] += risk or 0.0
            b[3] = max(b[3], risk or 0.0)
        return [{"bucket_start": iso(k * bucket_seconds), "tool_calls": v[0], "violations": v[1],
                 "mean_risk": round(v[2] / v[0], 4), "max_risk": v[3]} for k, v in sorted(buckets.items())]

    # ---- approvals ----------------------------------------------------------------------

    _APPROVAL_SELECT = (
        "SELECT approval_id, tenant_id, hold_token, violation_id, decision_id, tool_name, tool_args, args_digest,"
        " agent_id, session_id, reason, requested_at, expires_at, status, resolved_by, resolution_reason,"
        " resolved_at, user_id, requested_by, required_approvals, uses, allowed_uses, valid_seconds, valid_until,"
        " token_used_at FROM approvals"
    )

    @staticmethod
    def _approval(r: Any) -> dict[str, Any]:
        return {"approval_id": r[0], "tenant_id": r[1], "hold_token": r[2], "violation_id": r[3],
                "decision_id": r[4], "tool_name": r[5], "tool_args": load_json(r[6]), "args_digest": r[7],
                "agent_id": r[8], "session_id": r[9], "request_reason": r[10], "requested_at": iso(r[11]),
                "expires_at": iso(r[12]), "status": r[13], "resolved_by": r[14], "reason": r[15],
                "resolved_at": iso(r[16]) if r[16] else None, "user_id": r[17], "requested_by": r[18],
                "required_approvals": r[19] or 1, "uses": r[20], "allowed_uses": r[21], "valid_seconds": r[22],
                "valid_until": iso(r[23]) if r[23] is not None else None, "_expires_ts": r[12],
                "_valid_until_ts": r[23], "_token_used_ts": r[24]}

    def approval(self, tenant_id: str, approval_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.one(self._APPROVAL_SELECT + " WHERE approval_id = ? AND tenant_id = ?",
                           (approval_id, tenant_id))
        return self._approval(row) if row else None

    def approval_reviews(self, approval_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.all("SELECT reviewer, decision, reason, via, reviewed_at FROM approval_reviews"
                            " WHERE approval_id = ? ORDER BY reviewed_at", (approval_id,))
        return [{"reviewer": r[0], "decision": r[1], "reason": r[2], "via": r[3], "reviewed_at": iso(r[4])}
                for r in rows]

    def pending_holds(self) -> int:
        with self.db.read() as conn:
            return int(conn.one("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > ?",
                                (now(),))[0])

    def pending_holds_by_tenant(self) -> dict[str, int]:
        """Open holds per tenant, read at scrape time: right whichever process created or resolved them."""
        with self.db.read() as conn:
            rows = conn.all("SELECT tenant_id, COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > ?"
                            " GROUP BY tenant_id", (now(),))
        return {r[0]: int(r[1]) for r in rows}

    # ---- audit --------------------------------------------------------------------------

    def verify_chain(self, tenant_id: str) -> dict[str, Any]:
        rows, head = self.chain_records(tenant_id)
        trusted = self.signer.public_key_hex if self.signer else None
        return audit.verify_chain(tenant_id, rows, head, trusted)

    def chain_records(self, tenant_id: str) -> tuple[list[audit.Row], audit.Head | None]:
        """A tenant's chain rows and signed head as thoth.audit verifies (and exports) them."""
        with self.db.read() as conn:
            # Both reads in one snapshot: a batch committed between them (events keep arriving)
            # would otherwise look like a chain extended past its signed head.
            conn.begin_snapshot()
            try:
                rows = conn.all("SELECT chain_index, previous_hash, hash, body, ingest_key_id FROM events"
                                " WHERE tenant_id = ?"
                                " ORDER BY chain_index", (tenant_id,))
                head = conn.one("SELECT chain_index, hash, signature, public_key FROM chain_heads"
                                " WHERE tenant_id = ?", (tenant_id,))
            finally:
                conn.rollback()  # a read-only snapshot: nothing to commit
        if head is not None and head[0] < 0:  # the placeholder row of a chain with no record yet
            head = None
        return [tuple(r) for r in rows], tuple(head) if head else None  # type: ignore[misc]
