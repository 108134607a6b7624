"""What the engine knows about one tool call (CallContext) and one session (SessionHistory)."""

from __future__ import annotations

import marshal
import time
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thoth.wire import EnforceRequest, mcp_tool_id, parse_enforce

if TYPE_CHECKING:
    from thoth.policy.decision import PolicyDecision
    from thoth.policy.markers import MarkerTable

_VIOLATIONS = frozenset({"BLOCK", "STEP_UP", "DEFER"})
_KINDS_BY_CODE = {"policy_scope_violation": ("scope",), "intent_violation": ("intent",),
                  "intent_unknown": ("intent",)}


@dataclass(slots=True)
class CallContext:
    """One governed tool call. Everything here may come from an untrusted client except
    risk_score (the server's analytics) and whatever the server fills in itself."""

    tool_name: str
    agent_id: str = ""
    tenant_id: str = ""
    user_id: str = "system"
    tool_args: dict[str, Any] = field(default_factory=dict)
    approved_scope: list[str] | None = None
    enforcement_mode: str = "progressive"
    environment: str = "prod"
    session_intent: str | None = None
    risk_score: float | None = None
    risk_reasons: list[str] = field(default_factory=list)
    now: float = 0.0
    session_tool_calls: list[str] | None = None
    # Our SDK's task and argument provenance, as sent (docs/wire.md); None from published clients.
    task: dict[str, Any] | None = None
    arg_sources: dict[str, Any] | None = None
    # The call's provenance.Provenance, computed on a condition's first use (per policy labels).
    provenance: Any = None
    # Set by the server for a call of an MCP tool (the request names its mcp_server): the tool's
    # pin flags, "changed", "suspicious", "unpinned" (thoth.server.mcp_pins). Empty otherwise.
    mcp_pin: frozenset[str] = frozenset()
    # The MCP server of the tool (docs/wire.md, "MCP tools"); None for a local tool. `tool_id`
    # is `server/tool` for an MCP tool, None otherwise: policy names match either form (ADR 0401).
    mcp_server: str | None = None
    tool_id: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.now:
            self.now = time.time()
        if self.mcp_server:
            self.tool_id = mcp_tool_id(self.mcp_server, self.tool_name)

    def names(self, match: Any) -> bool:
        """Whether `match` (a name test) accepts this tool by its own name or as `server/tool`."""
        return bool(match(self.tool_name)) or (self.tool_id is not None and bool(match(self.tool_id)))

    @classmethod
    def from_request(cls, body: dict[str, Any], *, risk_score: float | None = None,
                     now: float | None = None, client_history: bool = True) -> CallContext:
        """Build from a /v1/enforce body (snake_case or camelCase), parsed by the wire contract's
        one parser: a wrong type or a missing tool_name/agent_id raises thoth.wire.WireError (the
        server's 422). client_history=False leaves out the client's session_tool_calls when the
        caller keeps its own SessionHistory."""
        return cls.from_wire(parse_enforce(body), risk_score=risk_score, now=now, client_history=client_history)

    @classmethod
    def from_wire(cls, request: EnforceRequest, *, risk_score: float | None = None,
                  now: float | None = None, client_history: bool = True) -> CallContext:
        return cls(
            tool_name=request.tool_name, agent_id=request.agent_id, tenant_id=request.tenant_id or "",
            user_id=request.user_id, tool_args=request.tool_args, approved_scope=request.approved_scope,
            enforcement_mode=request.enforcement_mode, environment=request.environment,
            session_intent=request.session_intent, risk_score=risk_score, now=now or time.time(),
            session_tool_calls=request.session_tool_calls if client_history else None,
            task=request.body.get("task"), arg_sources=request.body.get("arg_sources"),
            mcp_server=request.body.get("mcp_server") or None,
        )


class SessionHistory:
    """Derived facts of one session, kept up to date in O(1) per recorded call.

    Rules never scan raw history: counts and last positions per tool, call times per tool (for
    rate conditions), and per-"marker" facts (a marker is a history predicate of the active
    policy, e.g. "read_file with path under /secrets/") are updated as calls are recorded.
    The raw calls are kept (up to MAX_KEPT) only to rebuild marker facts when a different
    policy version evaluates this session.
    """

    MAX_KEPT = 10_000

    __slots__ = ("n", "counts", "last_index", "times", "all_times", "violations", "scope_violations",
                 "intent_violations", "calls", "markers", "_table", "pending")

    def __init__(self) -> None:
        self.n = 0
        self.counts: dict[str, int] = {}
        self.last_index: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.all_times: list[float] = []
        self.violations = 0
        self.scope_violations = 0
        self.intent_violations = 0
        # Arguments are kept marshalled (see _frozen): only a rebind reads them again.
        self.calls: list[tuple[str, bytes | dict[str, Any], float | None]] = []
        # marker key -> [count, last_index, times]
        self.markers: dict[str, list[Any]] = {}
        self._table: MarkerTable | None = None
        # Set by evaluate(): (tool, decision) of the call just decided, so that record() called
        # with only a verdict string still knows which checks it violated (scope, intent).
        self.pending: tuple[str, Any] | None = None

    @classmethod
    def from_tool_names(cls, names: list[str] | None, current: str | None = None) -> SessionHistory:
        """History from a client's session_tool_calls (names only, no times). The wire list ends
        with the current call; it is dropped so that only earlier calls count."""
        history = cls()
        if names:
            earlier = names[:-1] if current is not None and names[-1] == current else names
            for name in earlier[-cls.MAX_KEPT:]:
                history.record(name, None, None)
        return history

    def __len__(self) -> int:
        return self.n

    def record(self, tool_name: str, tool_args: dict[str, Any] | None = None, ts: float | None = None,
               decision: str | PolicyDecision | None = None, *, reason_code: str | None = None) -> None:
        """Add one call (after it was decided). O(1) amortised.

        `decision` is the PolicyDecision, or its verdict string. With a string, the violated
        checks come from the evaluate() that just decided this tool, or from `reason_code`
        (policy_scope_violation, intent_violation) when replaying stored decisions."""
        args = tool_args if isinstance(tool_args, dict) else {}
        index = self.n
        self.n += 1
        self.counts[tool_name] = self.counts.get(tool_name, 0) + 1
        self.last_index[tool_name] = index
        if ts is not None:
            _append_time(self.times.setdefault(tool_name, []), ts)
            _append_time(self.all_times, ts)
        if len(self.calls) < self.MAX_KEPT:
            self.calls.append((tool_name, _frozen(args), ts))
        pending, self.pending = self.pending, None
        if isinstance(decision, str) and pending is not None and pending[0] == tool_name:
            decision = pending[1]  # the PolicyDecision evaluate() just made for this call
        if decision is not None and (isinstance(decision, str) or decision.would_decision in _VIOLATIONS):
            self._count_violation(decision, reason_code)
        if self._table is not None:
            self._table.update(self.markers, tool_name, args, index, ts)

    def _count_violation(self, decision: Any, reason_code: str | None = None) -> None:
        verdict = decision if isinstance(decision, str) else getattr(decision, "decision", None)
        found = getattr(decision, "violations", None)
        kinds: tuple[str, ...] | list[str] = found if found is not None else _KINDS_BY_CODE.get(reason_code or "", ())
        # Observe mode allows everything; what counts is what the policy would have done.
        would = getattr(decision, "would_decision", None)
        if str(verdict) in _VIOLATIONS or str(would) in _VIOLATIONS:
            self.violations += 1
            if "scope" in kinds:
                self.scope_violations += 1
            if "intent" in kinds:
                self.intent_violations += 1

    def bind(self, table: MarkerTable) -> None:
        """Track the markers of `table` (a policy's history predicates), replaying kept calls."""
        if self._table is table:
            return
        self._table = table
        self.markers = {}
        for index, (tool_name, kept, ts) in enumerate(self.calls):
            args: dict[str, Any] = marshal.loads(kept) if isinstance(kept, bytes) else kept
            table.update(self.markers, tool_name, args, index, ts)

    # Queries used by compiled conditions --------------------------------------------------------
    def count_since(self, times: list[float] | None, since: float) -> int:
        if not times:
            return 0
        return len(times) - bisect_left(times, since)


def _frozen(args: dict[str, Any]) -> bytes | dict[str, Any]:
    """The arguments as marshal bytes: a server keeps thousands of sessions' calls, and as dicts
    every full garbage collection walked them all (a 65-75 ms pause, measured). Bytes are not
    tracked by the collector. Arguments marshal cannot write (objects of an in-process agent)
    stay as they are."""
    if not args:
        return args
    try:
        return marshal.dumps(args)
    except ValueError:
        return args


def _append_time(times: list[float], ts: float) -> None:
    if not times or ts >= times[-1]:
        times.append(ts)
    else:  # clocks and late records: keep the list sorted for bisect
        insort(times, ts)
