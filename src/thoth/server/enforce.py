"""One enforce call, top to bottom: parse, policy, session history, analytics, evaluate, the
approval of a held call, the answer, the record (write-behind), then the hooks.

`Core.enforce` is this function (bound as a method: no extra call on the hot path); the state it
reads and updates (caches, history, writer, metrics) is the Core's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from thoth.analytics.provenance import provenance_signals
from thoth.server import engine, mcp_marker
from thoth.server.db import StorageUnavailable
from thoth.server.holds import fire
from thoth.server.records import ApprovalRow, DecisionRecord, DecisionRow
from thoth.server.store import KeyInfo, new_id
from thoth.wire import WireError as ClientError
from thoth.wire import decision_envelope, parse_enforce, server_fields

if TYPE_CHECKING:
    from thoth.server.core import Core

VIOLATION_DECISIONS = frozenset({"BLOCK", "STEP_UP"})
# What an approval allows unless its policy rule says otherwise (approval_uses, approval_valid_seconds).
APPROVAL_USES = 1
APPROVAL_VALID_SECONDS = 600.0
# Re-reads of a session's stored history while it lags behind the client's count (seconds).
_CATCH_UP_DELAYS = (0.001, 0.002, 0.004, 0.008, 0.015)
log = logging.getLogger("thoth.server")


async def enforce(core: Core, key: KeyInfo, body: Any) -> bytes:
    started = time.perf_counter()
    request = parse_enforce(body)  # the one parser of the wire contract (thoth.wire)
    tenant_id = request.tenant_id or key.tenant_id
    if tenant_id != key.tenant_id:
        raise ClientError(403, "tenant_id does not match the API key's tenant")
    tool_name, agent_id, user_id = request.tool_name, request.agent_id, request.user_id
    session_id = request.session_id or str(uuid.uuid4())
    mode, environment, intent = request.enforcement_mode, request.environment, request.session_intent
    scope, session_calls = request.approved_scope, request.session_tool_calls or []
    tool_args, dedup_key = request.tool_args, request.dedup_key
    if dedup_key is not None:
        hit = core.dedup.get((tenant_id, session_id, dedup_key))
        if hit is None:
            hit = await core.read(core.store.decision_by_dedup, tenant_id, session_id, dedup_key)
        if hit is not None:
            return hit

    # Calls of this session being decided right now: they explain a client count ahead of ours.
    flight = (tenant_id, session_id)
    core.in_flight[flight] = core.in_flight.get(flight, 0) + 1
    try:
        policy, policy_version = await core.policy(tenant_id)
        history, known = await session_history(core, tenant_id, session_id, session_calls, tool_name)
        now = time.time()
        risk, risk_reasons, anomaly = None, [], None
        call = engine.CallContext(
            tenant_id=tenant_id, agent_id=agent_id, user_id=user_id, tool_name=tool_name, tool_args=tool_args,
            approved_scope=scope, enforcement_mode=mode, environment=environment, session_intent=intent,
            now=now, session_tool_calls=session_calls,
            task=request.body.get("task"), arg_sources=request.body.get("arg_sources"),
            mcp_server=request.body.get("mcp_server") or None,
        )
        if call.mcp_server:  # an MCP tool: its pin's flags, from a per-tenant cache (mcp_pins.py)
            call.mcp_pin = await core.mcp_pins.flags(tenant_id, call.mcp_server, tool_name, core.read)
        analytics = core.analytics(tenant_id)
        if analytics is not None:
            try:
                # Our SDK's provenance feeds the score (None for published clients: no cost).
                signals = provenance_signals(call, policy.trusted) \
                    if call.arg_sources is not None or call.task is not None else None
                anomaly = analytics.score(agent_id, tool_name, tool_args, now, session_id=session_id,
                                          provenance=signals)
                risk, risk_reasons = float(anomaly.score), list(anomaly.reasons)
                call.risk_score, call.risk_reasons = risk, risk_reasons
            except Exception:  # analytics is advisory: never fail a decision over it
                anomaly = None
        result = policy.evaluate(call, history)
        decision = str(result.decision).upper()
        hold_token_in = request.hold_token
        digest = ""  # of the arguments: only a held call needs it (a sorted dump and a SHA-256 per call)
        held = None  # the approval of this exact call, when the policy holds it (or the client names it)
        ladder_block = decision == "BLOCK" and _ladder_block(result, mode)
        if decision == "STEP_UP" or ladder_block or hold_token_in:
            digest = call_digest(tool_args, call.mcp_server)
            held = await _approval_of_call(core, tenant_id, session_id, agent_id, user_id, tool_name, digest,
                                                hold_token_in, decision == "STEP_UP" or ladder_block)
        would = str(getattr(result, "would_decision", None) or decision).upper()
        risk_score = float(getattr(result, "risk_score", None) or risk or 0.0)
        decision_id = new_id("dec")
        violation_id = new_id("vio") if (decision in VIOLATION_DECISIONS or would in VIOLATION_DECISIONS) else None
        envelope = server_fields(decision_envelope(result, risk_score), decision_id=decision_id,
                                 session_id=session_id, mode=mode, violation_id=violation_id,
                                 risk_reasons=risk_reasons, policy_version=policy_version)
        approval_row = None
        if held is not None and decision in VIOLATION_DECISIONS:
            decision = _apply_approval(envelope, held, decision, ladder_block)
            violation_id = envelope["violation_id"]
        if decision == "STEP_UP" and envelope["hold_token"] is None:
            hold_token = "hold_" + uuid.uuid4().hex  # unguessable: a capability
            # A rule's own step-up timeout (or the policy's default) sets the expiry.
            timeout = float(getattr(result, "step_up_timeout_seconds", None) or core.settings.hold_timeout_seconds)
            envelope["hold_token"] = hold_token
            envelope["step_up_timeout_seconds"] = timeout
            approval_row = ApprovalRow(
                approval_id=new_id("apr"), tenant_id=tenant_id, hold_token=hold_token, violation_id=violation_id,
                decision_id=decision_id, tool_name=tool_name, tool_args=orjson.dumps(tool_args, default=str).decode(),
                args_digest=digest or call_digest(tool_args, call.mcp_server), agent_id=agent_id, session_id=session_id,
                reason=result.reason, requested_at=now, expires_at=now + timeout, status="pending",
                user_id=user_id, requested_by=key.key_id,
                required_approvals=core.required_approvals(tenant_id, tool_name),
                allowed_uses=getattr(result, "approval_uses", None) or APPROVAL_USES,
                valid_seconds=getattr(result, "approval_valid_seconds", None) or APPROVAL_VALID_SECONDS)
        mcp_server = call.mcp_server  # read once from the request, when the call was built
        if mcp_server and (decision == "ALLOW" or decision == "MODIFY"):  # ADR 0403: one check per MCP call
            envelope["mcp_marker"] = mcp_marker.issue(
                core, tenant_id=tenant_id, decision_id=decision_id, agent_id=agent_id, session_id=session_id,
                server=mcp_server, tool=tool_name, now=now,
                tool_args=envelope.get("modified_tool_args") if decision == "MODIFY" else tool_args)
        latency = time.perf_counter() - started
        envelope["latency_ms"] = round(latency * 1000, 3)
        response = orjson.dumps(envelope, default=str)
        row = DecisionRow(
            decision_id=decision_id, tenant_id=tenant_id, session_id=session_id, agent_id=agent_id,
            user_id=user_id, tool_name=tool_name, tool_args=orjson.dumps(tool_args, default=str).decode(),
            decision=decision, would_decision=would, reason=envelope["reason"],
            reason_code=envelope["decision_reason_code"],
            matched_rule_ids=orjson.dumps(envelope["matched_rule_ids"]).decode(), risk_score=risk_score,
            violation_id=violation_id, hold_token=envelope["hold_token"], enforcement_mode=mode,
            environment=environment, dedup_key=dedup_key, decided_at=now,
            # The answer is kept to replay it to a repeated check of the same call, and for the
            # dashboard when it explains where a held or blocked call's data came from.
            response=response.decode() if dedup_key is not None or "provenance" in envelope else "")
        history.record(tool_name, tool_args, now, decision)
        known[0] += 1
        record = DecisionRecord(row, approval_row)
        if analytics is not None:  # learning from the call can wait until the answer is sent
            asyncio.get_running_loop().call_soon(_observe, analytics, agent_id, tool_name, tool_args, now, decision,
                                                 session_id, anomaly)
        if dedup_key is None and approval_row is None:
            # Write-behind: the row joins the next group commit, after this answer is sent
            # (thoth.server.writer; docs/performance.md says what a crash can lose).
            await core.writer.record(record)
        else:
            # A hold is polled next, perhaps through another process, and a dedup key's answer
            # depends on who stored the call first: both wait for their commit.
            stored = await core.writer.submit(record)
            if not stored and dedup_key is not None:  # another request recorded this call first
                earlier = await core.read(core.store.decision_by_dedup, tenant_id, session_id, dedup_key)
                if earlier is not None:
                    core.dedup.put((tenant_id, session_id, dedup_key), earlier)
                    return earlier
            if dedup_key is not None:
                core.dedup.put((tenant_id, session_id, dedup_key), response)
        core.metrics.observe_decision(decision, time.perf_counter() - started)
        if approval_row is not None:
            approval = await core.read(core.store.approval_by_token, tenant_id, approval_row.hold_token)
            if approval is not None:
                fire(core.hold_created_hooks, approval)
        return response
    finally:
        left = core.in_flight[flight] - 1
        if left:
            core.in_flight[flight] = left
        else:
            del core.in_flight[flight]


async def session_history(core: Core, tenant_id: str, session_id: str, session_calls: list[str],
                          tool_name: str) -> tuple[Any, list[int]]:
    """The session's history and how many of its calls this process accounts for.

    Built from the database on first sight, and rebuilt when the client's session_tool_calls
    lists more earlier calls than this process knows of: the session's other calls went
    through another process. The check is one comparison on the hot path."""
    key = (tenant_id, session_id)
    entry = core.histories.get(key)
    earlier = len(session_calls) - (1 if session_calls and session_calls[-1] == tool_name else 0)
    # Other calls of this session in flight here are not in the history yet, and not missing.
    deciding = core.in_flight.get(key, 1) - 1
    if entry is None or earlier > entry[1][0] + deciding:
        try:
            rows = await _stored_history(core, tenant_id, session_id, earlier, deciding)
        except StorageUnavailable:
            # The database cannot tell this session's earlier calls. Decide on what this
            # process knows of them (nothing, for a session new to it) rather than answer
            # 503, which an SDK answers by not checking the call at all. The count stays
            # short, so the history is read again once the database answers.
            if entry is None:
                entry = (engine.SessionHistory(), [0])
                core.histories.put(key, entry)
            return entry
        fresh = core.histories.get(key)  # rebuilt meanwhile by a concurrent call of this session?
        if fresh is not None and fresh is not entry and earlier <= fresh[1][0]:
            return fresh
        history = engine.SessionHistory()
        for row in rows:
            engine.replay_decision(history, *row)
        # Calls the client made that no process recorded (e.g. decided locally) are not
        # looked for again and again.
        entry = (history, [max(len(history), earlier)])
        core.histories.put(key, entry)
    return entry

async def _stored_history(core: Core, tenant_id: str, session_id: str, earlier: int, deciding: int) -> list[Any]:
    key = ("history", tenant_id, session_id)
    rows: list[Any] = await core.read_once(key, core.store.session_history_rows, tenant_id, session_id)
    # The client counts more earlier calls than are stored: the latest may have been
    # answered by another process whose write-behind commit is still on its way (under a
    # millisecond, more under load). Wait for it briefly; calls that were never sent to
    # a server (failed open) make this wait once, not on every call.
    for delay in _CATCH_UP_DELAYS if deciding == 0 else ():
        if len(rows) >= earlier:
            break
        await asyncio.sleep(delay)
        rows = await core.read_once(key, core.store.session_history_rows, tenant_id, session_id)
    return rows


async def _approval_of_call(core: Core, tenant_id: str, session_id: str, agent_id: str, user_id: str,
                            tool_name: str, digest: str, token: str | None,
                            use: bool) -> dict[str, Any] | None:
    """The approval bound to exactly this call (tool, arguments digest, agent, user, session):
    its pending hold, or an approval with a use for it (taken here when `use`: the answer will
    be the ALLOW). With the client's hold_token: that hold's own use (docs/approvals.md, "Uses").
    Without one the call is a new call: only a further use of an approval that allows several
    covers it; otherwise it is held anew."""
    if not token:
        found = None
        for _ in range(3):  # another process may take the last use between the read and the UPDATE
            found = await core.read(core.store.approval_for_call, tenant_id, session_id, agent_id, user_id,
                                    tool_name, digest)
            if found is None or not use or await core.read(core.store.use_approval, found, False):
                return found
        return None
    approval = await core.read(core.store.approval_by_token, tenant_id, token)
    if approval is None:
        raise ClientError(404, "unknown hold token")
    bound = (approval["tool_name"], approval["args_digest"], approval["agent_id"], approval["session_id"],
             approval["user_id"])
    if bound != (tool_name, digest, agent_id, session_id, user_id):
        return None  # granted for another call: this one is decided on its own
    if approval["status"] == "pending":
        return approval if approval["_expires_ts"] > time.time() else None
    if approval["status"] != "approved":
        return None
    return approval if not use or await core.read(core.store.use_approval, approval, True) else None

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


def args_digest(tool_args: Any) -> str:
    return hashlib.sha256(orjson.dumps(tool_args, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


def call_digest(tool_args: Any, mcp_server: Any = None) -> str:
    """What a hold is bound to besides tool, agent and session: the arguments, and for an MCP
    tool its server too (an approval of `files/delete` never lifts `mail/delete`; ADR 0401)."""
    if not mcp_server:
        return args_digest(tool_args)
    return args_digest({"mcp_server": mcp_server, "tool_args": tool_args})


def _observe(analytics: Any, agent_id: str, tool_name: str, tool_args: Any, ts: float, decision: str,
             session_id: str, anomaly: Any) -> None:
    try:
        analytics.observe(agent_id, tool_name, tool_args, ts, decision, session_id=session_id, anomaly=anomaly)
    except Exception:  # advisory: a baseline that misses one call is still a baseline
        log.debug("analytics observe failed", exc_info=True)


def _ladder_block(result: Any, mode: str) -> bool:
    """A BLOCK that only the session's earlier violations caused (the progressive ladder): what
    the re-check of a held call gets, since the hold itself counted as the first violation."""
    code = result.reason_code
    if code == "repeated_violation":
        return True
    kinds = set(getattr(result, "violations", None) or ())
    return mode == "progressive" and code in ("policy_scope_violation", "intent_violation") \
        and bool(kinds) and kinds <= {"scope", "intent"}
