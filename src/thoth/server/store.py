"""The server's write path, on SQLite and PostgreSQL.

Writes on the hot paths (decisions, events) go through `thoth.server.writer`, which calls
`write_batch` here inside one group-commit transaction over a `WriteOps` (thoth.server.writeops);
where the engines' SQL differs, the code asks the dialect (thoth.server.dialect). The rows are
typed records (thoth.server.records). Control-plane writes (keys, policies, approvals) are
plain methods, each one transaction, as are the enforce path's look-ups.

The control plane's reads are thoth.server.reads (inherited by `Store`); the dashboard's are
thoth.server.dashboard.queries.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from thoth import audit
from thoth.audit.sign import Signer
from thoth.server.db import Connection, Database
from thoth.server.notify import rules
from thoth.server.reads import Reads
from thoth.server.records import (
    APPROVAL_COLUMNS,
    DECISION_COLUMNS,
    EVENT_COLUMNS,
    ApprovalRow,
    BatchResult,
    DecisionRecord,
    DecisionRow,
    EventBatch,
    EventRow,
    iso,
    load_json,
    now,
)
from thoth.server.writeops import SyncOps, WriteOps, run_now

# The records (thoth.server.records) are re-exported for callers that import them from here.
__all__ = [
    "APPROVAL_COLUMNS", "APPROVAL_STATUSES", "DECISION_COLUMNS", "EVENT_COLUMNS", "ROLES", "ApprovalRow",
    "BatchResult", "DecisionRecord", "DecisionRow", "EventBatch", "EventRow", "KeyInfo", "Store", "WriteContext",
    "hash_key", "iso", "new_id", "now",
]

ROLES = ("sdk", "approver", "viewer", "admin", "ingest")
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Ids: a random per-process part plus a counter. Unique across processes and restarts, and
# much cheaper than uuid4 per id (os.urandom costs ~10 us on this VM, twice per decision).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant_id: str
    role: str
    revoked: bool


_INSERT_DECISION = (
    f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({', '.join('?' * len(DECISION_COLUMNS))})"
)
_INSERT_DECISION_DEDUP = _INSERT_DECISION + (" ON CONFLICT (tenant_id, session_id, dedup_key) WHERE dedup_key IS NOT NULL"
                                            " DO NOTHING")
_INSERT_APPROVAL = (
    f"INSERT INTO approvals ({', '.join(APPROVAL_COLUMNS)}) VALUES ({', '.join('?' * len(APPROVAL_COLUMNS))})"
)
_UPSERT_SESSION = (
    "INSERT INTO sessions (tenant_id, session_id, agent_id, user_id, started_at, last_event_at, tool_calls,"
    " blocked, stepped_up, risk_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant_id, session_id) DO UPDATE SET"
    " last_event_at = CASE WHEN excluded.last_event_at > sessions.last_event_at"
    "   THEN excluded.last_event_at ELSE sessions.last_event_at END,"
    " tool_calls = sessions.tool_calls + excluded.tool_calls,"
    " blocked = sessions.blocked + excluded.blocked,"
    " stepped_up = sessions.stepped_up + excluded.stepped_up,"
    " risk_score = CASE WHEN excluded.risk_score > sessions.risk_score"
    "   THEN excluded.risk_score ELSE sessions.risk_score END"
)


@dataclass
class WriteContext:
    """What one group-commit transaction knows of the tenants' chains."""

    # Chain heads this process committed last (kept by the PostgreSQL writer): the transaction
    # appends to them without first reading the head and the known ids (see _write_events).
    known_heads: dict[str, tuple[int, str]] | None = None
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    dirty_heads: set[str] = field(default_factory=set)
    guessed: set[str] = field(default_factory=set)  # tenants appended to a known head, ids unchecked


class Store(Reads):
    """The write path: group-commit writes (decisions, events, the audit chain's heads), keys,
    policies and approvals, and the enforce path's look-ups (key, policy, session history, dedup,
    approval of a call). The control plane's reads are inherited from `Reads`."""

    def __init__(self, db: Database, signer: Signer | None = None) -> None:
        super().__init__(db, signer)

    # ---- tenants and keys -------------------------------------------------------------

    def ensure_tenant(self, conn: Connection, tenant_id: str) -> None:
        conn.execute("INSERT INTO tenants (tenant_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     (tenant_id, now()))

    def create_key(self, tenant_id: str, role: str, name: str | None = None) -> dict[str, Any]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key_id = secrets.token_hex(6)
        key = f"thk_{key_id}_{secrets.token_urlsafe(24)}"
        created = now()
        with self.db.transaction() as conn:
            self.ensure_tenant(conn, tenant_id)
            conn.execute(
                "INSERT INTO api_keys (key_id, tenant_id, role, key_hash, prefix, name, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, tenant_id, role, hash_key(key), key[:16], name, created),
            )
        return {"tenant_id": tenant_id, "key": key, "role": role, "key_id": key_id, "name": name,
                "created_at": iso(created)}

    def revoke_key(self, key_id: str, tenant_id: str | None = None) -> bool:
        sql = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        params: tuple[Any, ...] = (now(), key_id)
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params += (tenant_id,)
        with self.db.transaction() as conn:
            return bool(conn.execute(sql, params).rowcount)

    def lookup_key(self, key: str) -> KeyInfo | None:
        with self.db.read() as conn:
            row = conn.one("SELECT key_id, tenant_id, role, revoked_at FROM api_keys WHERE key_hash = ?",
                           (hash_key(key),))
        if row is None:
            return None
        return KeyInfo(row[0], row[1], row[2], row[3] is not None)

    # ---- policies ---------------------------------------------------------------------

    def active_policy(self, tenant_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.one(
                "SELECT version, document, created_at, created_by, comment FROM policies"
                " WHERE tenant_id = ? AND active = ?", (tenant_id, True))
        if row is None:
            return None
        return {"version": row[0], "document": row[1], "created_at": iso(row[2]), "created_by": row[3],
                "comment": row[4]}

    def add_policy_version(self, tenant_id: str, document: str, created_by: str | None,
                           comment: str | None = None) -> int:
        with self.db.transaction() as conn:
            self.ensure_tenant(conn, tenant_id)
            if conn.dialect.for_update:  # serialise version numbers per tenant across processes
                conn.execute("SELECT tenant_id FROM tenants WHERE tenant_id = ?" + conn.dialect.for_update,
                             (tenant_id,))
            row = conn.one("SELECT COALESCE(MAX(version), 0) FROM policies WHERE tenant_id = ?", (tenant_id,))
            version = int(row[0]) + 1
            conn.execute("UPDATE policies SET active = ? WHERE tenant_id = ? AND active = ?",
                         (False, tenant_id, True))
            conn.execute(
                "INSERT INTO policies (tenant_id, version, document, created_at, created_by, comment, active)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant_id, version, document, now(), created_by, comment, True))
        return version

    # ---- decisions, sessions, violations ------------------------------------------------

    def session_history_rows(self, tenant_id: str, session_id: str
                             ) -> list[tuple[str, Any, float, str, str | None, str | None, list[str]]]:
        """(tool, args, ts, decision, would_decision, reason_code, matched_rule_ids) of a session, in order."""
        with self.db.read() as conn:
            # Planned at every execution: psycopg prepares a query at its fifth run, and a plan
            # made while the table was small (stale statistics: no ANALYZE yet) walked the tenant's
            # whole (tenant_id, decided_at) index for every new session, ~25,000 rows a read in
            # the bench, where (tenant_id, session_id, decided_at) finds the session's few.
            rows = conn.all("SELECT tool_name, tool_args, decided_at, decision, would_decision, reason_code,"
                            " matched_rule_ids FROM decisions"
                            " WHERE tenant_id = ? AND session_id = ? ORDER BY decided_at", (tenant_id, session_id),
                            prepare=False)
        return [(r[0], load_json(r[1]) or {}, r[2], r[3], r[4], r[5], load_json(r[6]) or []) for r in rows]

    def decision_by_dedup(self, tenant_id: str, session_id: str, dedup_key: str) -> bytes | None:
        with self.db.read() as conn:
            row = conn.one("SELECT response FROM decisions WHERE tenant_id = ? AND session_id = ? AND dedup_key = ?",
                           (tenant_id, session_id, dedup_key))
        return row[0].encode() if row else None

    # ---- approvals ----------------------------------------------------------------------

    def expire_approvals(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Resolve every overdue pending approval to `expired` (the hold answers BLOCK); returns them."""
        ts = now()
        where = " WHERE status = 'pending' AND expires_at <= ?"
        params: tuple[Any, ...] = (ts,)
        if tenant_id is not None:
            where += " AND tenant_id = ?"
            params += (tenant_id,)
        with self.db.read() as conn:  # the common case: nothing overdue, no write lock taken
            if conn.one("SELECT approval_id FROM approvals" + where + " LIMIT 1", params) is None:
                return []
        with self.db.transaction() as conn:
            overdue = [self._approval(r) for r in conn.all(self._APPROVAL_SELECT + where, params)]
            conn.execute("UPDATE approvals SET status = 'expired', resolved_at = ?, resolved_by = 'system:timeout',"
                         " resolution_reason = 'approval timed out'" + where, (ts, *params))
            for a in overdue:
                a.update(status="expired", resolved_by="system:timeout", reason="approval timed out",
                         resolved_at=iso(ts))
                self.append_events(conn, a["tenant_id"], [rules.approval_event(
                    "APPROVAL_RESOLVED", a, ts, status="expired", resolved_by="system:timeout", via="timeout")])
        return overdue

    def approval_by_token(self, tenant_id: str, hold_token: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.one(self._APPROVAL_SELECT + " WHERE hold_token = ? AND tenant_id = ?",
                           (hold_token, tenant_id))
        return self._approval(row) if row else None

    def list_approvals(self, tenant_id: str | None, status: str | None, limit: int = 100,
                       cursor: float | None = None) -> tuple[list[dict[str, Any]], str | None]:
        self.expire_approvals(tenant_id)
        sql = self._APPROVAL_SELECT + " WHERE 1 = 1"
        params: list[Any] = []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        if status:
            sql += " AND status = ?"
            params.append(status)
        if cursor is not None:
            sql += " AND requested_at < ?"
            params.append(cursor)
        sql += " ORDER BY requested_at DESC LIMIT ?"
        params.append(limit + 1)
        with self.db.read() as conn:
            rows = conn.all(sql, params)
        items = [self._approval(r) for r in rows[:limit]]
        return items, (repr(rows[limit - 1][11]) if len(rows) > limit else None)

    def resolve_approval(self, tenant_id: str | None, approval_id: str, approve: bool, resolved_by: str,
                         reason: str | None, via: str = "api") -> tuple[str, dict[str, Any] | None]:
        """-> (outcome, approval). Only a pending, unexpired approval resolves; nothing changes otherwise.

        outcome: "ok"; "partial" (a two-person approval got its first approver and stays pending);
        "not_found"; "not_pending"; "self_approval" (the requester tried to approve their own call);
        "already_reviewed" (the same person approved twice).
        """
        self.expire_approvals(tenant_id)
        where = " WHERE approval_id = ?" + (" AND tenant_id = ?" if tenant_id is not None else "")
        key = (approval_id,) if tenant_id is None else (approval_id, tenant_id)
        ts = now()
        with self.db.transaction() as conn:
            row = conn.one(self._APPROVAL_SELECT + where + conn.dialect.for_update, key)
            if row is None:
                return "not_found", None
            approval = self._approval(row)
            if approval["status"] != "pending":
                return "not_pending", approval
            if approval["_expires_ts"] is not None and approval["_expires_ts"] <= ts:
                # It expired between the sweep above and this locked read: expiry wins.
                approval["status"] = "expired"
                return "not_pending", approval
            if approve and rules.is_self_approval(approval, resolved_by):
                return "self_approval", approval
            needed = approval["required_approvals"]
            if approve and needed > 1:
                reviewers = [r[0] for r in conn.all(
                    "SELECT reviewer FROM approval_reviews WHERE approval_id = ? AND decision = 'approve'",
                    (approval_id,))]
                if resolved_by in reviewers:
                    return "already_reviewed", approval
                conn.execute("INSERT INTO approval_reviews (approval_id, reviewer, tenant_id, decision, reason, via,"
                             " reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (approval_id, resolved_by, approval["tenant_id"], "approve", reason, via, ts))
                reviewers.append(resolved_by)
                approval["approvals"] = reviewers
                if len(reviewers) < needed:
                    self.append_events(conn, approval["tenant_id"], [rules.approval_event(
                        "APPROVAL_REVIEWED", approval, ts, reviewer=resolved_by, via=via, reason=reason,
                        approvals_received=len(reviewers), approvals_required=needed)])
                    return "partial", approval
                resolved_by = ", ".join(reviewers)
            status = "approved" if approve else "denied"
            # An approval is usable for its window from now (docs/approvals.md, "Uses").
            valid_until = ts + approval["valid_seconds"] if approve else None
            conn.execute("UPDATE approvals SET status = ?, resolved_by = ?, resolution_reason = ?, resolved_at = ?,"
                         " valid_until = ?" + where, (status, resolved_by, reason, ts, valid_until, *key))
            approval.update(status=status, resolved_by=resolved_by, reason=reason, resolved_at=iso(ts),
                            valid_until=iso(valid_until) if valid_until is not None else None,
                            _valid_until_ts=valid_until)
            reach = {"valid_until": approval["valid_until"], "allowed_uses": approval["allowed_uses"]} if approve else {}
            self.append_events(conn, approval["tenant_id"], [rules.approval_event(
                "APPROVAL_RESOLVED", approval, ts, status=status, resolved_by=resolved_by, via=via, reason=reason,
                **reach)])
        return "ok", approval

    def append_events(self, conn: Connection, tenant_id: str, events: list[dict[str, Any]]) -> None:
        """Chain server-made events (approval loop records) inside the caller's write transaction."""
        ctx = WriteContext()
        ops = SyncOps(conn)
        run_now(self._write_events(ops, ctx, tenant_id, [EventBatch(tenant_id, events)]))
        run_now(self._sign_heads(ops, ctx))

    # A use may be taken while the window is open and uses are left; the hold token's own use
    # (the held call the approver saw) is kept for it until it is taken.
    _USABLE = (" status = 'approved' AND valid_until > ?"
               " AND uses + CASE WHEN token_used_at IS NULL THEN 1 ELSE 0 END < allowed_uses + ?")

    def approval_for_call(self, tenant_id: str, session_id: str, agent_id: str, user_id: str, tool_name: str,
                          digest: str) -> dict[str, Any] | None:
        """The newest approval of this exact call (same session, agent, user, tool and arguments)
        with a use left for another call than the held one; None when there is none."""
        with self.db.read() as conn:
            row = conn.one(self._APPROVAL_SELECT + " WHERE tenant_id = ? AND session_id = ? AND args_digest = ?"
                           " AND agent_id = ? AND tool_name = ? AND user_id = ? AND" + self._USABLE
                           + " ORDER BY requested_at DESC LIMIT 1",
                           (tenant_id, session_id, digest, agent_id, tool_name, user_id, now(), 0))
        return self._approval(row) if row else None

    def use_approval(self, approval: dict[str, Any], with_token: bool) -> bool:
        """Take a use of an approved approval; True when the call it answers may run.

        With the hold token: the held call's own use, taken once and then the same use for every
        poll and re-check that carries the token, while the window is open. Without: a further
        use, when the policy allowed more than one. One conditional UPDATE, so processes sharing
        the database never hand out more uses than allowed."""
        ts = now()
        if with_token:
            if approval["_token_used_ts"] is not None:  # taken already: the same use, inside its window
                return approval["_valid_until_ts"] is not None and ts < approval["_valid_until_ts"]
            sql = ("UPDATE approvals SET uses = uses + 1, token_used_at = ? WHERE approval_id = ?"
                   " AND token_used_at IS NULL AND" + self._USABLE)
            params: tuple[Any, ...] = (ts, approval["approval_id"], ts, 1)
        else:
            sql = "UPDATE approvals SET uses = uses + 1 WHERE approval_id = ? AND" + self._USABLE
            params = (approval["approval_id"], ts, 0)
        with self.db.transaction() as conn:
            taken = conn.execute(sql, params).rowcount == 1
            if not taken and with_token:  # a concurrent poll or re-check with the token took it
                row = conn.one("SELECT valid_until FROM approvals WHERE approval_id = ? AND token_used_at IS NOT NULL",
                               (approval["approval_id"],))
                return row is not None and row[0] is not None and ts < row[0]
        if taken:
            approval["uses"] += 1
        return taken

    # ---- group-commit writes (called by the writer) ---------------------------------------
    # Written once, as coroutines over the writer's ops (thoth.server.writer): on PostgreSQL
    # they run on psycopg's async connection in pipeline mode (`run` and `executemany` only queue
    # a statement; `one`, `all` and `execute`'s row count wait for the answers), so a transaction
    # costs about three round trips; on SQLite they never suspend and run synchronously.

    def store_journaled(self, db: Any, records: list[DecisionRecord]) -> int:
        """Decisions replayed from a dead process's journal (thoth.server.journal): those not
        stored yet go in with their sessions' counts, as the writer would have. Returns how many."""
        conn = db.connect()
        try:
            known: set[str] = set()
            for i in range(0, len(records), 500):
                ids = [rec.row.decision_id for rec in records[i:i + 500]]
                marks = ", ".join("?" for _ in ids)
                known.update(r[0] for r in conn.all(f"SELECT decision_id FROM decisions WHERE decision_id IN ({marks})",
                                                    ids))
            fresh = [rec for rec in records if rec.row.decision_id not in known]
            for i in range(0, len(fresh), 512):
                conn.begin_write()
                try:
                    run_now(self.write_batch(SyncOps(conn), fresh[i:i + 512]))
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
            return len(fresh)
        finally:
            conn.close()

    async def write_batch(self, ops: WriteOps, jobs: list[Any], ctx: WriteContext | None = None) -> list[Any]:
        ctx = ctx or WriteContext()
        results: list[Any] = [None] * len(jobs)
        # Plain decisions (no dedup key) go in with one COPY / executemany; sessions get one upsert each.
        plain = [i for i, job in enumerate(jobs) if isinstance(job, DecisionRecord) and job.row.dedup_key is None]
        if plain:
            await ops.copy("decisions", DECISION_COLUMNS, [jobs[i].row.values() for i in plain])
            approvals = [jobs[i].approval.values() for i in plain if jobs[i].approval is not None]
            if approvals:
                await ops.executemany(_INSERT_APPROVAL, approvals)
            for i in plain:
                results[i] = True
        sessions: dict[tuple[str, str], list[Any]] = {}
        event_jobs: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            if isinstance(job, DecisionRecord):
                if job.row.dedup_key is not None:
                    results[i] = await self._write_decision(ops, job)
                if results[i]:
                    self._count_session(sessions, job.row)
            elif isinstance(job, EventBatch):
                event_jobs.setdefault(job.tenant_id, []).append(i)
            elif job is not None:  # None: the writer's barrier (settled()), nothing to write
                raise TypeError(f"unknown job {job!r}")
        requested = self._approval_requests(jobs, results)
        # Locks are taken in sorted order (chain heads, then session rows): two transactions in
        # flight at once (server processes sharing PostgreSQL) never wait for each other in a cycle.
        for tenant in sorted({*event_jobs, *requested}):
            # All batches of one tenant in this transaction: one duplicate check, one insert.
            indexes = event_jobs.get(tenant, [])
            batches = [jobs[i] for i in indexes] + ([requested[tenant]] if tenant in requested else [])
            written = await self._write_events(ops, ctx, tenant, batches)
            for i, result in zip(indexes, written[:len(indexes)], strict=True):
                results[i] = result
        if sessions:
            await ops.executemany(_UPSERT_SESSION, [(*key, *vals) for key, vals in sorted(sessions.items())])
        await self._sign_heads(ops, ctx)
        return results

    @staticmethod
    def _approval_requests(jobs: list[Any], results: list[Any]) -> dict[str, EventBatch]:
        """APPROVAL_REQUESTED audit events of the holds stored in this transaction, per tenant."""
        out: dict[str, EventBatch] = {}
        for job, stored in zip(jobs, results, strict=True):
            if isinstance(job, DecisionRecord) and job.approval is not None and stored:
                approval = dict(zip(APPROVAL_COLUMNS, job.approval.values(), strict=True))
                tenant = job.row.tenant_id
                out.setdefault(tenant, EventBatch(tenant, [])).events.append(rules.approval_event(
                    "APPROVAL_REQUESTED", approval, job.row.decided_at, expires_at=iso(approval["expires_at"]),
                    required_approvals=approval["required_approvals"], reason=approval["reason"]))
        return out

    @staticmethod
    def _count_session(sessions: dict[tuple[str, str], list[Any]], rec: DecisionRow) -> None:
        # agent_id, user_id, started_at, last_event_at, tool_calls, blocked, stepped_up, risk_score
        s = sessions.get((rec.tenant_id, rec.session_id))
        if s is None:
            s = sessions[(rec.tenant_id, rec.session_id)] = [rec.agent_id, rec.user_id, rec.decided_at,
                                                             rec.decided_at, 0, 0, 0, 0.0]
        s[3] = max(s[3], rec.decided_at)
        s[4] += 1
        s[5] += rec.decision == "BLOCK"
        s[6] += rec.decision == "STEP_UP"
        s[7] = max(s[7], rec.risk_score)

    async def _write_decision(self, ops: WriteOps, rec: DecisionRecord) -> bool:
        if rec.row.dedup_key is not None:
            if await ops.execute(_INSERT_DECISION_DEDUP, rec.row.values()) == 0:
                return False  # the same call was already recorded (possibly by another process)
        else:
            await ops.run(_INSERT_DECISION, rec.row.values())
        if rec.approval is not None:
            await ops.run(_INSERT_APPROVAL, rec.approval.values())
        return True

    async def _write_events(self, ops: WriteOps, ctx: WriteContext, tenant: str,
                            batches: list[EventBatch]) -> list[BatchResult]:
        # The chain head and the already-stored ids are both asked before either answer is
        # awaited: one round trip on PostgreSQL, during which the head stays locked.
        head = None
        known = ctx.known_heads.get(tenant) if ctx.known_heads is not None else None
        if known is not None and tenant not in ctx.heads:
            # Append to the head this process committed last, and assume the ids are new: the
            # whole transaction then goes out at once, no answer awaited while the head is locked.
            # A wrong guess fails the transaction, which the writer then retries without
            # known_heads: another process that appended meanwhile holds the next chain index
            # (the events' primary key), an id stored before violates its unique key.
            await ops.run("SELECT chain_index FROM chain_heads WHERE tenant_id = ?" + ops.dialect.for_update,
                          (tenant,))
            ctx.heads[tenant] = known
        if tenant not in ctx.heads:
            await ops.run("INSERT INTO chain_heads (tenant_id, chain_index, hash) VALUES (?, ?, ?)"
                          " ON CONFLICT DO NOTHING", (tenant, -1, audit.GENESIS))
            # FOR UPDATE: the chain head is the per-tenant lock across processes on PostgreSQL;
            # held to the commit, so two processes never hand out the same chain index.
            # (SQLite: the whole write transaction is already exclusive: no lock to add.)
            head = await ops.query("SELECT chain_index, hash FROM chain_heads WHERE tenant_id = ?"
                                   + ops.dialect.for_update, (tenant,))
        ids = list({e["event_id"] for batch in batches for e in batch.events})
        found = None
        if known is not None:
            ctx.guessed.add(tenant)
        else:
            # Planned at every execution, not prepared (the dialect's ids_in says why).
            condition, params = ops.dialect.ids_in("event_id", ids)
            found = await ops.query("SELECT event_id FROM events WHERE tenant_id = ? AND " + condition,
                                    [tenant, *params], prepare=False)
        if head is not None:
            row = (await ops.fetch(head))[0]
            ctx.heads[tenant] = (int(row[0]), row[1])
        index, prev = ctx.heads[tenant]
        existing = {r[0] for r in await ops.fetch(found)} if found is not None else set()
        ingested_at = iso(now())
        rows = []
        results = []
        for batch in batches:
            result = BatchResult()
            results.append(result)
            for event in batch.events:
                if event["event_id"] in existing:
                    result.duplicates += 1
                    continue
                existing.add(event["event_id"])
                index += 1
                body, h = audit.link(event, tenant, ingested_at, index, prev, batch.key_id)
                rows.append(EventRow(tenant, index, event["event_id"], event.get("session_id"),
                                     event.get("agent_id"), event.get("event_type"), event.get("tool_name"),
                                     event.get("occurred_at"), ingested_at, prev, h, body.decode(),
                                     batch.key_id).values())
                prev = h
                result.accepted += 1
        if rows:
            await ops.copy("events", EVENT_COLUMNS, rows)
            ctx.heads[tenant] = (index, prev)
            ctx.dirty_heads.add(tenant)
        return results

    async def _sign_heads(self, ops: WriteOps, ctx: WriteContext) -> None:
        for tenant in ctx.dirty_heads:
            index, h = ctx.heads[tenant]
            sig = self.signer.sign(tenant, index, h) if self.signer else None
            pub = self.signer.public_key_hex if self.signer else None
            await ops.run("UPDATE chain_heads SET chain_index = ?, hash = ?, signature = ?, public_key = ?,"
                          " signed_at = ? WHERE tenant_id = ?", (index, h, sig, pub, now(), tenant))
