"""The server's working state and its decisions: enforce, holds, approvals, ingestion.

HTTP glue lives in dataplane.py / controlplane.py; this module knows nothing about HTTP except
the `ClientError` it raises for bad input (turned into a 4xx with a JSON `message`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from thoth.server import analytics_state, engine, journal, migrate
from thoth.server.audit import Signer
from thoth.server.db import RETRY_SECONDS, Database, StorageUnavailable, is_unavailable
from thoth.server.metrics import Metrics
from thoth.server.settings import Settings
from thoth.server.store import (
    DecisionRecord,
    EventBatch,
    KeyInfo,
    Store,
    iso,
    new_id,
)
from thoth.server.writer import InlineWriter, Writer

DATA_PLANE_ROLES = frozenset({"sdk", "approver", "admin"})
INGEST_ROLES = DATA_PLANE_ROLES | {"ingest"}
READ_ROLES = frozenset({"viewer", "approver", "admin"})
RESOLVE_ROLES = frozenset({"approver", "admin"})
MODES = frozenset({"observe", "step_up", "block", "progressive"})
VIOLATION_DECISIONS = frozenset({"BLOCK", "STEP_UP"})
MAX_EVENTS_PER_BATCH = 1000
MAX_HOLD_WAIT = 60.0
# Re-reads of a session's stored history while it lags behind the client's count (seconds).
_CATCH_UP_DELAYS = (0.001, 0.002, 0.004, 0.008, 0.015)
log = logging.getLogger("thoth.server")


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


ENFORCE_FIELDS = (
    "agent_id", "tenant_id", "user_id", "tool_name", "session_id", "session_tool_calls", "approved_scope",
    "enforcement_mode", "environment", "enforcement_trace_id", "tool_args", "session_intent",
    "action_attestation_id", "tool_call_id", "call_id", "hold_token", "identity_binding", "purpose",
    "data_classification", "task_context", "metadata", "auth_context", "delegation_context",
)
EVENT_FIELDS = (
    "event_id", "tenant_id", "agent_id", "session_id", "user_id", "source_type", "event_type", "content",
    "metadata", "approved_scope", "enforcement_mode", "session_tool_calls", "tool_name", "endpoint_id",
    "hostname", "occurred_at", "ttl", "violation_id",
)
# Filled by the server whatever the client sends.
EVENT_SERVER_FIELDS = frozenset({"ingested_at", "chain_index", "hash", "previous_hash", "signature"})
_CAMEL_TO_SNAKE = {_camel(f): f for f in (*ENFORCE_FIELDS, *EVENT_FIELDS, *EVENT_SERVER_FIELDS)}
_EVENT_STRINGS = frozenset({"event_id", "tenant_id", "agent_id", "session_id", "user_id", "source_type", "event_type",
                            "tool_name", "endpoint_id", "hostname", "occurred_at", "enforcement_mode", "violation_id"})
_EVENT_STRING_LISTS = frozenset({"approved_scope", "session_tool_calls"})


_CAMEL_ONLY = frozenset(k for k, v in _CAMEL_TO_SNAKE.items() if k != v)


def normalize_keys(body: dict[str, Any]) -> dict[str, Any]:
    """camelCase spellings of known fields become snake_case (snake wins when both are present)."""
    if _CAMEL_ONLY.isdisjoint(body):  # the usual snake_case body: nothing to rename, no copy
        return body
    out = dict(body)
    for key in body:
        snake = _CAMEL_TO_SNAKE.get(key)
        if snake is not None and snake != key:
            value = out.pop(key)
            out.setdefault(snake, value)
    return out


def _str(body: dict[str, Any], name: str, default: str | None = None, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ClientError(422, f"'{name}' is required")
        return default
    if not isinstance(value, str):
        raise ClientError(422, f"'{name}' must be a string")
    if required and not value:
        raise ClientError(422, f"'{name}' must not be empty")
    return value


_STR_TYPE = {str}


def _str_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not list or not set(map(type, value)) <= _STR_TYPE:  # C-speed check of every item
        raise ClientError(422, f"'{name}' must be a list of strings")
    return value


def _observe(analytics: Any, agent_id: str, tool_name: str, tool_args: Any, ts: float, decision: str,
             session_id: str, anomaly: Any) -> None:
    try:
        analytics.observe(agent_id, tool_name, tool_args, ts, decision, session_id=session_id, anomaly=anomaly)
    except Exception:  # advisory: a baseline that misses one call is still a baseline
        log.debug("analytics observe failed", exc_info=True)


def args_digest(tool_args: Any) -> str:
    return hashlib.sha256(orjson.dumps(tool_args, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class Core:
    """Everything one server process holds: store, writer, caches, metrics, hooks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        migrate.upgrade(settings.database_url)
        self.db = Database(settings.database_url, timeout=settings.db_timeout_seconds,
                           statement_timeout=settings.db_statement_timeout_seconds)
        self.signer = Signer(settings.key_path)
        self.store = Store(self.db, self.signer)
        self.writer: Writer | InlineWriter = (
            Writer(self.db, self.store) if self.db.postgres else InlineWriter(self.db, self.store))
        self.metrics = Metrics()
        self._keys: dict[str, tuple[float, KeyInfo | None]] = {}
        self._policies: dict[str, tuple[float, Any, int | None]] = {}
        # Bumped when a key is revoked or a policy pushed here: a look-up that began before is
        # not cached (it may have read the old row), and requests after it do not share it.
        self._cache_gen = 0
        self._histories: _LRU = _LRU(20_000)
        self._dedup: _LRU = _LRU(100_000)
        self._reads: dict[Any, asyncio.Future[Any]] = {}
        self._in_flight: dict[tuple[str, str], int] = {}  # (tenant, session) -> enforce calls being decided
        self._hold_events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None
        # One analytics engine per tenant, in memory (per process; see docs/server.md).
        self._analytics: dict[str, Any] = {}
        # Hooks for notifications (Slack, webhooks): called with the approval dict.
        self.hold_created_hooks: list[Callable[[dict[str, Any]], Any]] = []
        self.hold_resolved_hooks: list[Callable[[dict[str, Any]], Any]] = []
        # (tenant_id, tool_name) -> approvals a hold needs; thoth.server.notify sets the two-person rule.
        self.required_approvals: Callable[[str, str], int] = lambda tenant_id, tool_name: 1

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Decisions a killed server answered but never committed (thoth.server.journal).
        journal.replay(self.settings.home / "journal", self.store, self.db)
        self.writer.journal = journal.Journal(self.settings.home / "journal")
        self.writer.start()
        self._flusher = self._loop.create_task(self._flush_analytics_forever())

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self.flush_analytics()
        self.writer.stop()
        if self.writer.journal is not None:
            self.writer.journal.close()
            self.writer.journal = None
        self.db.close()

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store read: inline on SQLite (microseconds), in a thread on PostgreSQL (a round trip).
        A database that cannot answer raises StorageUnavailable (503)."""
        try:
            if self.db.postgres:
                with self.db.request_bound():  # a client waits: the short bound, not a report's
                    return await asyncio.to_thread(fn, *args)
            return fn(*args)
        except StorageUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable("the database is unavailable; retry shortly") from exc
            raise

    async def read_once(self, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """`read`, shared by concurrent requests that need the same thing (the calls of a session
        arriving together): one query instead of one each, and one answer for all of them."""
        if not self.db.postgres:
            return await self.read(fn, *args)
        pending = self._reads.get(key)
        if pending is None:
            pending = self._reads[key] = asyncio.ensure_future(self.read(fn, *args))
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(pending)  # a cancelled request must not cancel the others' read

    def _refresh_behind(self, what: tuple[str, str], cache: dict[str, Any], fn: Callable[[str], Any]) -> None:
        """Refresh an expired cache entry in a thread while the request goes on with it; a refresh
        that fails (the database is down) keeps the entry, retried RETRY_SECONDS later."""
        if what in self._reads:
            return
        name = what[1]

        def done(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                entry = cache.get(name)
                if entry is not None:
                    cache[name] = (time.monotonic() + RETRY_SECONDS, *entry[1:])

        asyncio.ensure_future(self.read_once(what, fn, name)).add_done_callback(done)

    @staticmethod
    def _stale(cache: dict[str, Any], name: str, exc: Exception) -> Any:
        """The expired entry, when the refresh failed for want of the database; else the error."""
        if not is_unavailable(exc):
            raise exc
        entry = cache.get(name)
        if entry is None:
            raise StorageUnavailable("the database is unavailable; retry shortly") from exc
        cache[name] = (time.monotonic() + RETRY_SECONDS, *entry[1:])
        return entry

    # ---- auth -------------------------------------------------------------------------
    # Keys and policies are cached for cache_ttl seconds. An expired entry is refreshed; when the
    # database cannot answer, the expired entry goes on serving (a tenant keeps its decisions
    # through an outage) and only a key never seen answers 503.

    async def authorize(self, key: str | None, roles: frozenset[str]) -> KeyInfo:
        """`authenticate` for the event loop (the data plane). On PostgreSQL the look-up runs in
        a thread, and an expired entry answers at once while its refresh runs behind it."""
        if not key:
            raise ClientError(401, "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'")
        cached = self._keys.get(key)
        if cached is not None and cached[0] >= time.monotonic():
            return _allowed(cached[1], roles)
        if not self.db.postgres:  # SQLite: microseconds, inline
            return self.authenticate(key, roles)
        if cached is not None and cached[1] is not None:  # (an unknown key may exist by now: wait)
            self._refresh_behind(("key", key), self._keys, self._load_key)
            return _allowed(cached[1], roles)
        return _allowed(await self.read_once(("key", key), self._load_key, key), roles)

    def authenticate(self, key: str | None, roles: frozenset[str]) -> KeyInfo:
        """The caller's key, blocking on a refresh (SQLite inline, control-plane threads)."""
        if not key:
            raise ClientError(401, "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'")
        cached = self._keys.get(key)
        if cached is not None and cached[0] >= time.monotonic():
            return _allowed(cached[1], roles)
        try:
            info = self._load_key(key)
        except Exception as exc:
            info = self._stale(self._keys, key, exc)[1]
        return _allowed(info, roles)

    def _load_key(self, key: str) -> KeyInfo | None:
        gen = self._cache_gen
        info = self.store.lookup_key(key)
        if gen == self._cache_gen:
            self._keys[key] = (time.monotonic() + self.settings.cache_ttl, info)
            if len(self._keys) > 10_000:
                self._keys.clear()
        return info

    def forget_key_cache(self) -> None:
        self._cache_gen += 1
        self._keys.clear()
        for what in [w for w in list(self._reads) if w[0] == "key"]:
            self._reads.pop(what, None)

    # ---- policy -----------------------------------------------------------------------

    async def policy(self, tenant_id: str) -> tuple[Any, int | None]:
        """`policy_for` for the event loop: like `authorize`, off the loop on PostgreSQL."""
        cached = self._policies.get(tenant_id)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1], cached[2]
        if not self.db.postgres:
            return self.policy_for(tenant_id)
        if cached is not None:
            self._refresh_behind(("policy", tenant_id), self._policies, self._load_policy)
            return cached[1], cached[2]
        result: tuple[Any, int | None] = await self.read_once(("policy", tenant_id), self._load_policy, tenant_id)
        return result

    def policy_for(self, tenant_id: str) -> tuple[Any, int | None]:
        cached = self._policies.get(tenant_id)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1], cached[2]
        try:
            return self._load_policy(tenant_id)
        except Exception as exc:
            entry = self._stale(self._policies, tenant_id, exc)
            return entry[1], entry[2]

    def _load_policy(self, tenant_id: str) -> tuple[Any, int | None]:
        gen = self._cache_gen
        cached = self._policies.get(tenant_id)
        active = self.store.active_policy(tenant_id)
        if cached is not None and active is not None and cached[2] == active["version"]:
            policy, version = cached[1], cached[2]
        elif active is None:
            policy, version = engine.default_policy(), None
        else:
            try:
                policy, version = engine.compile_policy(active["document"]), active["version"]
            except Exception:  # a stored document no longer compiles: fall back, never 500
                policy, version = engine.default_policy(), None
        if gen == self._cache_gen:
            self._policies[tenant_id] = (time.monotonic() + self.settings.cache_ttl, policy, version)
        return policy, version

    def forget_policy(self, tenant_id: str) -> None:
        self._cache_gen += 1
        self._policies.pop(tenant_id, None)
        self._reads.pop(("policy", tenant_id), None)

    # ---- enforce ----------------------------------------------------------------------

    async def enforce(self, key: KeyInfo, body: Any) -> bytes:
        started = time.perf_counter()
        if not isinstance(body, dict):
            raise ClientError(422, "the request body must be a JSON object")
        body = normalize_keys(body)
        tenant_id = _str(body, "tenant_id") or key.tenant_id
        if tenant_id != key.tenant_id:
            raise ClientError(403, "tenant_id does not match the API key's tenant")
        tool_name = _str(body, "tool_name", required=True)
        agent_id = _str(body, "agent_id", required=True)
        assert tool_name is not None and agent_id is not None
        user_id = _str(body, "user_id", "system") or "system"
        session_id = _str(body, "session_id") or str(uuid.uuid4())
        mode = (_str(body, "enforcement_mode", "progressive") or "progressive").strip().lower()
        if mode not in MODES:
            mode = "progressive"
        environment = (_str(body, "environment", "prod") or "prod").strip().lower()
        intent = _str(body, "session_intent")
        scope = _str_list(body, "approved_scope")
        session_calls = _str_list(body, "session_tool_calls") or []
        tool_args = body.get("tool_args")
        if tool_args is None:
            tool_args = {}
        elif not isinstance(tool_args, dict):
            if isinstance(tool_args, list):
                tool_args = {"args": tool_args}
            else:
                raise ClientError(422, "'tool_args' must be an object")
        dedup_key = None
        for name in ("tool_call_id", "call_id", "action_attestation_id"):
            value = body.get(name)
            if isinstance(value, str) and value:
                dedup_key = f"{name}:{value}"
                break
        if dedup_key is not None:
            hit = self._dedup.get((tenant_id, session_id, dedup_key))
            if hit is None:
                hit = await self.read(self.store.decision_by_dedup, tenant_id, session_id, dedup_key)
            if hit is not None:
                return hit

        # Calls of this session being decided right now: they explain a client count ahead of ours.
        flight = (tenant_id, session_id)
        self._in_flight[flight] = self._in_flight.get(flight, 0) + 1
        try:
            policy, policy_version = await self.policy(tenant_id)
            history, known = await self._history(tenant_id, session_id, session_calls, tool_name)
            now = time.time()
            risk, risk_reasons, anomaly = None, [], None
            analytics = self.analytics(tenant_id)
            if analytics is not None:
                try:
                    anomaly = analytics.score(agent_id, tool_name, tool_args, now, session_id=session_id)
                    risk, risk_reasons = float(anomaly.score), list(anomaly.reasons)
                except Exception:  # analytics is advisory: never fail a decision over it
                    anomaly = None
            call = engine.CallContext(
                tenant_id=tenant_id, agent_id=agent_id, user_id=user_id, tool_name=tool_name, tool_args=tool_args,
                approved_scope=scope, enforcement_mode=mode, environment=environment, session_intent=intent,
                risk_score=risk, risk_reasons=risk_reasons, now=now, session_tool_calls=session_calls,
            )
            result = policy.evaluate(call, history)
            decision = str(result.decision).upper()
            hold_token_in = body.get("hold_token")
            if not isinstance(hold_token_in, str):
                hold_token_in = None
            digest = ""  # of the arguments: only a held call needs it (a sorted dump and a SHA-256 per call)
            held = None  # the approval of this exact call, when the policy holds it (or the client names it)
            ladder_block = decision == "BLOCK" and _ladder_block(result, mode)
            if decision == "STEP_UP" or ladder_block or hold_token_in:
                digest = args_digest(tool_args)
                held = await self._approval_of_call(tenant_id, session_id, agent_id, tool_name, digest, hold_token_in)
            would = str(getattr(result, "would_decision", None) or decision).upper()
            risk_score = float(getattr(result, "risk_score", None) or risk or 0.0)
            decision_id = new_id("dec")
            violation_id = new_id("vio") if (decision in VIOLATION_DECISIONS or would in VIOLATION_DECISIONS) else None
            envelope: dict[str, Any] = {
                "decision": decision,
                "authorization_decision": decision,
                "reason": result.reason,
                "decision_reason_code": result.reason_code,
                "violation_id": violation_id,  # also in observe mode: the would-be violation is on record
                "hold_token": None,
                "step_up_timeout_seconds": None,
                "risk_score": risk_score,
                "matched_rule_ids": list(result.matched_rule_ids or []),
                "policy_references": list(getattr(result, "policy_references", None) or []),
                "regulatory_regimes": [],
                "matched_control_ids": [],
                "model_signals": list(risk_reasons),
                "decision_id": decision_id,
                "session_id": session_id,
                "enforcement_mode": mode,
                "would_decision": would,
                "policy_version": policy_version,
                # Published clients accept only an integer or null here (a string makes them block).
                "rule_version": policy_version if isinstance(policy_version, int) else None,
            }
            approval_row = None
            if held is not None and decision in VIOLATION_DECISIONS:
                decision = self._apply_approval(envelope, held, decision, ladder_block)
                violation_id = envelope["violation_id"]
            if decision == "STEP_UP" and envelope["hold_token"] is None:
                hold_token = "hold_" + uuid.uuid4().hex  # unguessable: a capability
                # A rule's own step-up timeout (or the policy's default) sets the expiry.
                timeout = float(getattr(result, "step_up_timeout_seconds", None) or self.settings.hold_timeout_seconds)
                envelope["hold_token"] = hold_token
                envelope["step_up_timeout_seconds"] = timeout
                approval_row = (new_id("apr"), tenant_id, hold_token, violation_id, decision_id, tool_name,
                                orjson.dumps(tool_args, default=str).decode(), digest or args_digest(tool_args), agent_id,
                                session_id, result.reason, now, now + timeout, "pending", user_id, key.key_id,
                                self.required_approvals(tenant_id, tool_name))
            elif decision == "MODIFY":
                envelope["modified_tool_args"] = result.modified_args
                envelope["modification_reason"] = result.reason
            elif decision == "DEFER":
                envelope["defer_reason"] = result.reason
                envelope["defer_timeout_seconds"] = getattr(result, "defer_timeout_seconds", None) or 300
            latency = time.perf_counter() - started
            envelope["latency_ms"] = round(latency * 1000, 3)
            response = orjson.dumps(envelope, default=str)
            row = (decision_id, tenant_id, session_id, agent_id, user_id, tool_name,
                   orjson.dumps(tool_args, default=str).decode(), decision, would, envelope["reason"],
                   envelope["decision_reason_code"],
                   orjson.dumps(envelope["matched_rule_ids"]).decode(), risk_score, violation_id,
                   envelope["hold_token"], mode, environment, dedup_key, now,
                   # The answer is kept only to replay it to a repeated check of the same call.
                   response.decode() if dedup_key is not None else "")
            history.record(tool_name, tool_args, now, decision)
            known[0] += 1
            record = DecisionRecord(row, tenant_id, session_id, agent_id, user_id, decision, risk_score, now,
                                    dedup_key, approval_row)
            if analytics is not None:  # learning from the call can wait until the answer is sent
                asyncio.get_running_loop().call_soon(_observe, analytics, agent_id, tool_name, tool_args, now, decision,
                                                     session_id, anomaly)
            if dedup_key is None and approval_row is None:
                # Write-behind: the row joins the next group commit, after this answer is sent
                # (thoth.server.writer; docs/performance.md says what a crash can lose).
                await self.writer.record(record)
            else:
                # A hold is polled next, perhaps through another process, and a dedup key's answer
                # depends on who stored the call first: both wait for their commit.
                stored = await self.writer.submit(record)
                if not stored and dedup_key is not None:  # another request recorded this call first
                    earlier = await self.read(self.store.decision_by_dedup, tenant_id, session_id, dedup_key)
                    if earlier is not None:
                        self._dedup.put((tenant_id, session_id, dedup_key), earlier)
                        return earlier
                if dedup_key is not None:
                    self._dedup.put((tenant_id, session_id, dedup_key), response)
            self.metrics.observe_decision(decision, time.perf_counter() - started)
            if approval_row is not None:
                approval = await self.read(self.store.approval_by_token, tenant_id, approval_row[2])
                if approval is not None:
                    self._fire(self.hold_created_hooks, approval)
            return response
        finally:
            left = self._in_flight[flight] - 1
            if left:
                self._in_flight[flight] = left
            else:
                del self._in_flight[flight]

    async def _approval_of_call(self, tenant_id: str, session_id: str, agent_id: str, tool_name: str,
                                digest: str, token: str | None) -> dict[str, Any] | None:
        """The pending or approved approval bound to exactly this call (tool, arguments digest, agent,
        session), found by the client's hold_token or, for a re-check without one, by the call itself."""
        if token:
            approval = await self.read(self.store.approval_by_token, tenant_id, token)
            if approval is None:
                raise ClientError(404, "unknown hold token")
            bound = (approval["tool_name"], approval["args_digest"], approval["agent_id"], approval["session_id"])
            if bound != (tool_name, digest, agent_id, session_id):
                return None  # granted for another call: this one is decided on its own
        else:
            approval = await self.read(self.store.approval_for_call, tenant_id, session_id, agent_id, tool_name,
                                       digest)
            if approval is None:
                return None
        if approval["status"] == "pending" and approval["_expires_ts"] <= time.time():
            return None
        return approval if approval["status"] in ("pending", "approved") else None

    @staticmethod
    def _apply_approval(envelope: dict[str, Any], approval: dict[str, Any], decision: str,
                        ladder_block: bool) -> str:
        """An approved hold allows its call; a pending one answers with the same hold, not a new one.

        Only a step-up (or the progressive ladder's block of that very re-check) is lifted; a
        block the policy would give anyway is not something the approver was asked about."""
        if decision == "BLOCK" and not ladder_block:
            return decision
        # The scope/intent ladder's block of the very call an approver allowed is lifted; while
        # the hold is pending, the same out-of-scope call again is a repeat and stays blocked.
        if decision == "BLOCK" and envelope["decision_reason_code"] != "repeated_violation" \
                and approval["status"] != "approved":
            return decision
        if approval["status"] == "approved":
            envelope.update(decision="ALLOW", authorization_decision="ALLOW", violation_id=None,
                            decision_reason_code="step_up_approved", approval_id=approval["approval_id"],
                            reason=f"approved by {approval['resolved_by']}"
                                   + (f": {approval['reason']}" if approval["reason"] else ""))
            return "ALLOW"
        remaining = max(0.0, approval["_expires_ts"] - time.time())
        envelope.update(decision="STEP_UP", authorization_decision="STEP_UP", hold_token=approval["hold_token"],
                        violation_id=approval["violation_id"], approval_id=approval["approval_id"],
                        step_up_timeout_seconds=round(remaining, 3))
        return "STEP_UP"

    def analytics(self, tenant_id: str) -> Any:
        if not self.settings.analytics:
            return None
        found = self._analytics.get(tenant_id)
        if found is None:
            # Baselines live in the database, shared by every process (analytics_state.py).
            found = self._analytics[tenant_id] = analytics_state.stored_engine(self.db, tenant_id)
        return found

    def flush_analytics(self) -> None:
        for stored in list(self._analytics.values()):
            try:
                stored.flush()
            except Exception as exc:  # advisory state: a failed sync is retried by the next flush
                if is_unavailable(exc):  # an outage: said once by thoth.server.db, not every flush
                    log.debug("analytics flush skipped: %s", exc)
                else:
                    log.warning("analytics flush failed", exc_info=True)

    async def _flush_analytics_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.analytics_flush_seconds)
            self.flush_analytics()

    async def _history(self, tenant_id: str, session_id: str, session_calls: list[str],
                       tool_name: str) -> tuple[Any, list[int]]:
        """The session's history and how many of its calls this process accounts for.

        Built from the database on first sight, and rebuilt when the client's session_tool_calls
        lists more earlier calls than this process knows of: the session's other calls went
        through another process. The check is one comparison on the hot path."""
        key = (tenant_id, session_id)
        entry = self._histories.get(key)
        earlier = len(session_calls) - (1 if session_calls and session_calls[-1] == tool_name else 0)
        # Other calls of this session in flight here are not in the history yet, and not missing.
        deciding = self._in_flight.get(key, 1) - 1
        if entry is None or earlier > entry[1][0] + deciding:
            try:
                rows = await self._stored_history(tenant_id, session_id, earlier, deciding)
            except StorageUnavailable:
                # The database cannot tell this session's earlier calls. Decide on what this
                # process knows of them (nothing, for a session new to it) rather than answer
                # 503, which an SDK answers by not checking the call at all. The count stays
                # short, so the history is read again once the database answers.
                if entry is None:
                    entry = (engine.SessionHistory(), [0])
                    self._histories.put(key, entry)
                return entry
            fresh = self._histories.get(key)  # rebuilt meanwhile by a concurrent call of this session?
            if fresh is not None and fresh is not entry and earlier <= fresh[1][0]:
                return fresh
            history = engine.SessionHistory()
            for row in rows:
                engine.replay_decision(history, *row)
            # Calls the client made that no process recorded (e.g. decided locally) are not
            # looked for again and again.
            entry = (history, [max(len(history), earlier)])
            self._histories.put(key, entry)
        return entry

    async def _stored_history(self, tenant_id: str, session_id: str, earlier: int, deciding: int) -> list[Any]:
        key = ("history", tenant_id, session_id)
        rows: list[Any] = await self.read_once(key, self.store.session_history_rows, tenant_id, session_id)
        # The client counts more earlier calls than are stored: the latest may have been
        # answered by another process whose write-behind commit is still on its way (under a
        # millisecond, more under load). Wait for it briefly; calls that were never sent to
        # a server (failed open) make this wait once, not on every call.
        for delay in _CATCH_UP_DELAYS if deciding == 0 else ():
            if len(rows) >= earlier:
                break
            await asyncio.sleep(delay)
            rows = await self.read_once(key, self.store.session_history_rows, tenant_id, session_id)
        return rows

    # ---- holds and approvals -------------------------------------------------------------

    @staticmethod
    def hold_answer(approval: dict[str, Any]) -> dict[str, Any]:
        status = approval["status"]
        answer: dict[str, Any] = {
            "hold_token": approval["hold_token"], "approval_id": approval["approval_id"], "status": status,
            "violation_id": approval["violation_id"], "tool_name": approval["tool_name"],
            "expires_at": approval["expires_at"],
        }
        if status == "pending":
            answer.update(resolved=False, resolution=None, decision="STEP_UP", authorization_decision="STEP_UP",
                          reason=approval["request_reason"])
            return answer
        resolution = "ALLOW" if status == "approved" else "BLOCK"
        reason = approval["reason"] or {"approved": "approved", "denied": "denied by approver",
                                        "expired": "approval timed out"}[status]
        answer.update(resolved=True, resolution=resolution, decision=resolution, authorization_decision=resolution,
                      reason=reason, resolved_by=approval["resolved_by"], resolved_at=approval["resolved_at"])
        return answer

    async def hold(self, key: KeyInfo, token: str, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_HOLD_WAIT)
        while True:
            approval = await self.read(self.store.approval_by_token, key.tenant_id, token)
            if approval is None:
                raise ClientError(404, "unknown hold token")
            if approval["status"] == "pending" and approval["_expires_ts"] <= time.time():
                await self.read(self.store.expire_approvals, key.tenant_id)
                continue
            remaining = deadline - time.monotonic()
            if approval["status"] != "pending" or remaining <= 0:
                return self.hold_answer(approval)
            # Woken at once by a resolution in this process; other processes are seen by re-reading.
            event = self._hold_events.setdefault(token, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=min(self.settings.hold_poll_interval, remaining))
            except TimeoutError:
                pass
            finally:
                if event.is_set():
                    self._hold_events.pop(token, None)

    async def resolve_approval(self, tenant_id: str | None, approval_id: str, approve: bool, resolved_by: str,
                               reason: str | None, via: str = "api") -> dict[str, Any]:
        """Resolve a pending approval (used by the API, the dashboard and notification integrations).

        A two-person approval answers with status still "pending" after its first approver.
        """
        outcome, approval = await asyncio.to_thread(
            self.store.resolve_approval, tenant_id, approval_id, approve, resolved_by, reason, via)
        if outcome == "not_found" or approval is None:
            raise ClientError(404, "unknown approval")
        problem = resolution_problem(outcome, approval, resolved_by)
        if problem is not None:
            raise ClientError(*problem)
        if outcome == "partial":
            return approval
        event = self._hold_events.pop(approval["hold_token"], None)
        if event is not None:
            event.set()
        if approve:
            self.learn_approved(approval)
        self._fire(self.hold_resolved_hooks, approval)
        return approval

    def learn_approved(self, approval: dict[str, Any]) -> None:
        """A held call is learnt by analytics only once a human approved it."""
        analytics = self.analytics(approval["tenant_id"])
        if analytics is not None:
            with contextlib.suppress(Exception):
                analytics.observe(approval["agent_id"], approval["tool_name"], approval["tool_args"] or {},
                                  time.time(), "ALLOW", session_id=approval["session_id"])

    def on_hold_created(self, hook: Callable[[dict[str, Any]], Any]) -> None:
        self.hold_created_hooks.append(hook)

    def on_hold_resolved(self, hook: Callable[[dict[str, Any]], Any]) -> None:
        self.hold_resolved_hooks.append(hook)

    @staticmethod
    def _fire(hooks: list[Callable[[dict[str, Any]], Any]], approval: dict[str, Any]) -> None:
        for hook in hooks:
            try:
                result = hook(public_approval(approval))
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:  # a notifier must never break enforcement
                pass

    # ---- ingest -------------------------------------------------------------------------

    async def ingest(self, key: KeyInfo, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "events" in body:
            body = body["events"]
        if not isinstance(body, list):
            self.metrics.events_rejected += 1
            raise ClientError(422, "the body must be a JSON array of events or {\"events\": [...]}")
        if len(body) > MAX_EVENTS_PER_BATCH:
            self.metrics.events_rejected += len(body)
            raise ClientError(413, f"at most {MAX_EVENTS_PER_BATCH} events per batch")
        events = []
        try:
            for i, raw in enumerate(body):
                events.append(self._event(key, i, raw))
        except ClientError:
            self.metrics.events_rejected += len(body)
            raise
        if not events:
            return {"accepted": 0, "duplicates": 0, "status": "ok"}
        result = await self.writer.submit(EventBatch(key.tenant_id, events))
        self.metrics.events_ingested += result.accepted
        self.metrics.events_duplicate += result.duplicates
        return {"accepted": result.accepted, "duplicates": result.duplicates, "status": "ok"}

    @staticmethod
    def _event(key: KeyInfo, i: int, raw: Any) -> dict[str, Any]:
        """Validate and normalise one event in one pass over its fields (this runs per event)."""
        if not isinstance(raw, dict):
            raise ClientError(422, f"event {i} must be a JSON object")
        event: dict[str, Any] = {}
        for name, value in raw.items():
            snake: str = _CAMEL_TO_SNAKE.get(name) or name
            if snake in EVENT_SERVER_FIELDS or (snake != name and snake in raw):  # snake case wins
                continue
            if value is not None:
                if snake in _EVENT_STRINGS:
                    if type(value) is not str:
                        raise ClientError(422, f"event {i}: '{snake}' must be a string")
                elif snake in _EVENT_STRING_LISTS:
                    if type(value) is not list or not all(type(v) is str for v in value):
                        raise ClientError(422, f"event {i}: '{snake}' must be a list of strings")
                elif snake == "metadata":
                    if not isinstance(value, dict):
                        raise ClientError(422, f"event {i}: 'metadata' must be an object")
                elif snake == "ttl" and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise ClientError(422, f"event {i}: 'ttl' must be a number")
            event[snake] = value
        event_id = event.get("event_id")
        if event_id is None:
            raise ClientError(422, f"event {i}: 'event_id' is required")
        if not event_id:
            raise ClientError(422, f"event {i}: 'event_id' must not be empty")
        if len(event_id) > 300:
            raise ClientError(422, f"event {i}: 'event_id' is too long")
        tenant = event.get("tenant_id")
        if tenant is not None and tenant != key.tenant_id:
            raise ClientError(403, f"event {i}: tenant_id does not match the API key's tenant")
        event["tenant_id"] = key.tenant_id
        return event

    # ---- audit ----------------------------------------------------------------------------

    def verify(self, tenant_id: str) -> dict[str, Any]:
        return self.store.verify_chain(tenant_id)


def _allowed(info: KeyInfo | None, roles: frozenset[str]) -> KeyInfo:
    if info is None or info.revoked:
        raise ClientError(401, "invalid or revoked API key")
    if info.role not in roles:
        raise ClientError(403, f"a key with role '{info.role}' may not do this")
    return info


def _ladder_block(result: Any, mode: str) -> bool:
    """A BLOCK that only the session's earlier violations caused (the progressive ladder): what
    the re-check of a held call gets, since the hold itself counted as the first violation."""
    code = result.reason_code
    if code == "repeated_violation":
        return True
    kinds = set(getattr(result, "violations", None) or ())
    return mode == "progressive" and code in ("policy_scope_violation", "intent_violation") \
        and bool(kinds) and kinds <= {"scope", "intent"}


def resolution_problem(outcome: str, approval: dict[str, Any], resolver: str) -> tuple[int, str] | None:
    """The (status, message) a refused resolution answers, or None when it was accepted."""
    if outcome == "not_pending":
        return 409, f"approval is already {approval['status']}"
    if outcome == "self_approval":
        return 403, f"{resolver} requested this call and cannot approve it"
    if outcome == "already_reviewed":
        return 409, f"{resolver} has already approved; this tool needs a second, different approver"
    return None


def public_approval(approval: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in approval.items() if not k.startswith("_")}


__all__ = ["Core", "ClientError", "iso", "public_approval"]
