"""compile_policy(): validate a policy document and compile it into a fast evaluator.

Evaluation order (docs/policy.md, "Precedence"), all of it deterministic:
  1. every source proposes outcomes: built-in scope and intent checks, every matching rule (in
     document order), the risk thresholds, the tool's tier default, Cedar;
  2. the most restrictive outcome wins: BLOCK > DEFER > STEP_UP > MODIFY > ALLOW; within a level
     the first proposal in the order above supplies the reason;
  3. the enforcement mode maps the outcome (observe / block / step_up / progressive ladder).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from thoth.models import DecisionType
from thoth.policy.cond_provenance import PLAN_ITEM
from thoth.policy.conditions import (
    CLASSIFICATIONS,
    TIERS,
    Compiler,
    arg_path,
    build_function,
    get_arg,
    normalize_args,
    tool_constraint,
)
from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.decision import SEVERITY, VIOLATION_DECISIONS, PolicyDecision, Proposal
from thoth.policy.errors import PolicyIssue, PolicyValidationError
from thoth.policy.loader import Marks, Path, load_document
from thoth.policy.markers import MarkerTable
from thoth.policy.provenance import (
    MAX_SOURCES_SHOWN,
    OUTPUT_LABELS,
    VALUE_SHOWN,
    Provenance,
    plan_state,
    provenance_of,
    shown,
)
from thoth.policy.task_plan import plan_verdict
from thoth.policy.tasks import compile_tasks, task_export
from thoth.policy.values import MISSING, name_matcher

ALLOW, BLOCK, STEP_UP, MODIFY, DEFER = (DecisionType.ALLOW, DecisionType.BLOCK, DecisionType.STEP_UP,
                                        DecisionType.MODIFY, DecisionType.DEFER)
ACTIONS: dict[str, DecisionType] = {"allow": ALLOW, "flag": ALLOW, "block": BLOCK, "step_up": STEP_UP,
                                    "modify": MODIFY, "defer": DEFER}
VIOLATION_ACTIONS = ("allow", "step_up", "block", "defer")
TOP_LEVEL = ("version", "name", "description", "defaults", "tiers", "tools", "agents", "intents",
             "progressive", "rules", "cedar", "rego", "tasks")
# defaults.<key> -> (the pin flag, the action when the policy does not say)
MCP_DEFAULTS = {"mcp_description_changed": "changed", "mcp_description_suspicious": "suspicious",
                "mcp_tool_unpinned": "unpinned"}
DEFAULT_MCP_ACTIONS: dict[str, DecisionType] = {"changed": STEP_UP, "suspicious": STEP_UP, "unpinned": STEP_UP}
_MCP_FLAGS = {"changed": ("mcp_description_changed", "is an MCP tool whose description or schema changed since it "
                                                     "was pinned"),
              "suspicious": ("mcp_description_suspicious", "is an MCP tool whose description looks like it carries "
                                                           "instructions for the model"),
              "unpinned": ("mcp_tool_unpinned", "is an MCP tool no admin pinned yet")}
DEFAULT_TIERS = {"low": "allow", "medium": "allow", "high": "step_up", "critical": "block"}
REDACTED = "[REDACTED]"
MAX_SUMMARY_PARTS = 20  # argument values listed in a decision's provenance summary
MAX_TASK_TEXT = 4000
MAX_PLAN_TOOLS = 50
_SOFT = frozenset({"flag", "allow", "modify"})
_UNKNOWN: Any = object()


@dataclass(slots=True)
class Rule:
    """A compiled rule. It doubles as its own proposal (same fields as Proposal) so that a
    matching rule costs no allocation."""

    id: str
    description: str
    action: str
    decision: DecisionType
    source: str  # the condition as a generated Python expression
    reason: str
    references: tuple[str, ...]
    code: str
    hard: bool
    modify: dict[str, Any] | None
    timeout: float | None
    constraint: frozenset[str] | None
    rule_id: str = ""
    kind: str = "rule"
    # How long an approval of this rule's step-up stays usable, and for how many calls.
    approval_valid: float | None = None
    approval_uses: int | None = None
    # What this rule's provenance and task conditions name, for its reason (cond_provenance).
    explain: tuple[tuple[str | None, frozenset[str] | None], ...] = ()


@dataclass(slots=True)
class Ladder:
    scope_first: DecisionType = STEP_UP
    scope_repeat: DecisionType = BLOCK
    intent_repeat: DecisionType = BLOCK
    block_after_violations: int = 3
    risk_step_up: float = 0.7
    risk_block: float = 0.9


@dataclass(slots=True)
class _Intent:
    match: Any
    on_violation: DecisionType


@dataclass
class CompiledPolicy:
    name: str
    version: str | None
    digest: str
    document: dict[str, Any]
    rules: list[Rule]
    catalogue: dict[str, dict[str, str]]
    tier_actions: dict[str, DecisionType]
    unknown_tool: DecisionType
    unknown_intent: DecisionType
    require_scope: bool
    step_up_timeout: float | None
    defer_timeout: float | None
    agents_exact: dict[str, Any]
    agents_glob: list[tuple[Any, Any]]
    intents: dict[str, _Intent]
    ladder: Ladder
    markers: MarkerTable
    namespace: dict[str, Any]
    cedar: Any = None
    approval_valid: float | None = None  # defaults.approval_valid_seconds
    approval_uses: int | None = None  # defaults.approval_uses
    # The tools whose output the catalogue labels trusted (the same object the conditions use,
    # so that a call's cached provenance serves both).
    trusted: frozenset[str] = frozenset()
    # The `tasks:` section, validated (thoth.policy.tasks): the SDK plans with it, never the engine.
    tasks: list[dict[str, Any]] = field(default_factory=list)
    # An MCP tool's pin flag -> what a call to it gets (defaults.mcp_*; builtin.mcp_pin).
    mcp_actions: dict[str, DecisionType] = field(default_factory=lambda: dict(DEFAULT_MCP_ACTIONS))
    _by_tool: dict[str, Any] = field(default_factory=dict)
    _generic: Any = None
    _tier_proposals: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One generated function per tool named by some rule, plus one for every other tool:
        # a call only evaluates the rules that can apply to its tool, in document order.
        tools: set[str] = set()
        for rule in self.rules:
            if rule.constraint is not None:
                tools |= rule.constraint
        namespace = dict(self.namespace)
        for i, rule in enumerate(self.rules):
            namespace[f"_r{i}"] = rule
        index = {id(rule): i for i, rule in enumerate(self.rules)}
        built: dict[tuple[int, ...], Any] = {}

        def function_for(rules: list[Rule]) -> Any:
            key = tuple(index[id(r)] for r in rules)
            if key not in built:
                lines = ["def _rules(c, a, h, in_scope, in_intent, hit, err):"]
                if any("(ev)" in self.rules[i].source for i in key):  # closures take the Eval
                    lines.append("    ev = Eval(c, h, in_scope, in_intent, a)")
                for i in key:
                    lines += ["    try:", f"        if {self.rules[i].source}:", f"            hit(_r{i})",
                              "    except Exception as _e:", f"        err((_r{i}, _e))"]
                if not key:
                    lines.append("    return None")
                built[key] = build_function("\n".join(lines) + "\n", namespace, "_rules")
            return built[key]

        # The tier default of each catalogued tool is a constant proposal (None for allow).
        for tool in self.catalogue:
            found: list[Any] = []
            self._tier_default(tool, False, found, None)
            self._tier_proposals[tool] = found[0] if found else None
        self._generic = function_for([r for r in self.rules if r.constraint is None])
        self._by_tool = {t: function_for([r for r in self.rules if r.constraint is None or t in r.constraint])
                         for t in tools}

    def task_export(self) -> dict[str, Any]:
        """What the SDK plans a task with (GET /v1/tasks; thoth.plan in-process)."""
        return task_export(self.document, self.catalogue, self.tasks, self.version)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def new_history(self) -> SessionHistory:
        history = SessionHistory()
        history.bind(self.markers)
        return history

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, call: CallContext, history: SessionHistory | None = None, *,
                 explain: bool = False) -> PolicyDecision:
        """Decide one call. Never raises for anything in `call`: errors become a BLOCK."""
        h = history if history is not None else SessionHistory.from_tool_names(call.session_tool_calls,
                                                                               call.tool_name)
        if h._table is not self.markers:
            h.bind(self.markers)
        tool = call.tool_name
        # The catalogue entry of an MCP tool: `server/tool` when the catalogue names it so, else `tool`.
        entry = call.tool_id if call.tool_id is not None and call.tool_id in self.catalogue else tool
        proposals: list[Any] = []
        matched: list[str] = []
        flags: list[str] = []
        errors: list[str] = []
        trace: list[str] | None = [] if explain else None

        in_scope = self._scope_check(call, h, proposals, trace)
        in_intent = self._intent_check(call, h, proposals, trace) if call.session_intent else True
        hits: list[Rule] = []
        failures: list[tuple[Rule, Exception]] = []
        self._by_tool.get(tool, self._generic)(call, normalize_args(call.tool_args), h, in_scope, in_intent,
                                               hits.append, failures.append)
        allow_rule = False
        modifiers: list[Rule] = []
        for rule, exc in failures:  # a value a rule cannot judge: fail closed
            errors.append(f"{rule.id}: {exc}")
            proposals.append(Proposal(BLOCK, "error", rule.id, f"rule {rule.id} could not be evaluated",
                                       "policy_evaluation_error", hard=True))
            if trace is not None:
                trace.append(f"rule {rule.id}: evaluation error ({exc}) -> BLOCK")
        if hits:
            matched.extend([rule.id for rule in hits])
            proposals.extend(hits)
            for rule in hits:
                action = rule.action
                if trace is not None:
                    trace.append(f"rule {rule.id} matched -> {action}")
                if action in _SOFT:
                    if action == "flag":
                        flags.append(rule.id)
                    elif action == "allow":
                        allow_rule = True
                    else:
                        modifiers.append(rule)

        if trace is not None:
            self._tier_default(entry, allow_rule, proposals, trace)
        elif not allow_rule:
            tier = self._tier_proposals.get(entry, _UNKNOWN)
            if tier is _UNKNOWN:
                if self.unknown_tool is not ALLOW:
                    self._tier_default(entry, False, proposals, None)
            elif tier is not None:
                proposals.append(tier)
        if call.risk_score is not None:
            self._risk_check(call, proposals, trace)
        if call.mcp_pin:  # only a call of a flagged MCP tool (the server sets it; docs/mcp.md)
            self._mcp_check(call, proposals, trace)
        if self.cedar is not None:
            self.cedar.evaluate(call, h, in_scope, in_intent, self.catalogue.get(entry), proposals, trace)
        decision = self._decide(call, h, proposals, matched, flags, errors, modifiers, trace)
        h.pending = (tool, decision)
        return decision

    def _scope_check(self, call: CallContext, h: SessionHistory, out: list[Any],
                     trace: list[str] | None) -> bool:
        server = self.agents_exact.get(call.agent_id)
        if server is None:
            for match_agent, tools in self.agents_glob:
                if match_agent(call.agent_id):
                    server = tools
                    break
        client = call.approved_scope or None
        if server is None and client is None:
            ok = not self.require_scope
        else:
            ok = (server is None or call.names(server)) and (
                client is None or call.tool_name in client or (call.tool_id is not None and call.tool_id in client))
        if not ok:
            repeat = h.scope_violations > 0
            verdict = self.ladder.scope_repeat if repeat else self.ladder.scope_first
            where = "the agent's declared scope" if server is None or call.names(server) else \
                "the tools this policy allows the agent"
            out.append(Proposal(verdict, "scope", "builtin.scope",
                                 f"{call.tool_name} is outside {where}" + (" (repeat in this session)" if repeat else ""),
                                 "policy_scope_violation"))
            if trace is not None:
                trace.append(f"scope: {call.tool_name} not in effective scope of {call.agent_id!r}"
                             f" -> {verdict.value}{' (repeat)' if repeat else ' (first in session)'}")
        elif trace is not None:
            trace.append("scope: in scope")
        return ok

    def _intent_check(self, call: CallContext, h: SessionHistory, out: list[Any],
                      trace: list[str] | None) -> bool:
        intent = call.session_intent
        if not intent:
            return True
        spec = self.intents.get(intent)
        if spec is None:
            if self.unknown_intent is not ALLOW:
                out.append(Proposal(self.unknown_intent, "intent", "builtin.intent",
                                     f"session intent {intent!r} is not defined by the policy", "intent_unknown"))
                if trace is not None:
                    trace.append(f"intent: {intent!r} unknown -> {self.unknown_intent.value}")
                return False
            return True
        if call.names(spec.match):
            if trace is not None:
                trace.append(f"intent: {call.tool_name} fits intent {intent!r}")
            return True
        verdict = spec.on_violation
        if h.intent_violations > 0 and verdict in (STEP_UP, DEFER):
            verdict = self.ladder.intent_repeat
        if verdict is not ALLOW:
            out.append(Proposal(verdict, "intent", "builtin.intent",
                                 f"{call.tool_name} is outside the session's declared intent {intent!r}",
                                 "intent_violation"))
        if trace is not None:
            trace.append(f"intent: {call.tool_name} outside intent {intent!r} -> {verdict.value}")
        return False

    def _tier_default(self, tool: str, allow_rule: bool, out: list[Any], trace: list[str] | None) -> None:
        meta = self.catalogue.get(tool)
        if allow_rule:
            if trace is not None:
                trace.append("tier default skipped: an allow rule matched")
            return
        if meta is None:
            verdict = self.unknown_tool
            if verdict is not ALLOW:
                out.append(Proposal(verdict, "tier", "builtin.unknown_tool",
                                     f"{tool} is not in the tool catalogue", "unknown_tool"))
            if trace is not None and self.catalogue:
                trace.append(f"tool {tool!r} not in catalogue -> {verdict.value}")
            return
        tier = meta["tier"]
        verdict = self.tier_actions[tier]
        if verdict is not ALLOW:
            out.append(Proposal(verdict, "tier", f"builtin.tier.{tier}",
                                 f"{tool} is a {tier}-risk tool", f"tier_{tier}"))
        if trace is not None:
            trace.append(f"tier default: {tool} is {tier} -> {verdict.value}")

    def _risk_check(self, call: CallContext, out: list[Any], trace: list[str] | None) -> None:
        risk = call.risk_score
        if risk is None:
            return
        if risk >= self.ladder.risk_block:
            out.append(Proposal(BLOCK, "risk", "builtin.risk", f"risk score {risk:.2f} is very high",
                                 "block_high_risk"))
        elif risk >= self.ladder.risk_step_up:
            out.append(Proposal(STEP_UP, "risk", "builtin.risk", f"risk score {risk:.2f} is high",
                                 "step_up_high_risk"))
        else:
            return
        if trace is not None:
            trace.append(f"risk {risk:.2f} -> {out[-1].decision.value}")

    def _mcp_check(self, call: CallContext, out: list[Any], trace: list[str] | None) -> None:
        """The built-in rule of pinned MCP tools: a changed, suspicious or unpinned tool gets the
        policy's defaults.mcp_* action (step_up unless the policy says otherwise)."""
        for flag, (code, what) in _MCP_FLAGS.items():
            if flag not in call.mcp_pin:
                continue
            verdict = self.mcp_actions[flag]
            if verdict is not ALLOW:
                out.append(Proposal(verdict, "mcp_pin", "builtin.mcp_pin",
                                     f"{call.tool_name} {what}; an admin can review and approve it (MCP tools)", code))
            if trace is not None:
                trace.append(f"mcp pin: {flag} -> {verdict.value}")

    def _decide(self, call: CallContext, h: SessionHistory, proposals: list[Any], matched: list[str],
                flags: list[str], errors: list[str], modifiers: list[Rule],
                trace: list[str] | None) -> PolicyDecision:
        mode = call.enforcement_mode
        if not proposals:  # the common case: nothing objects
            if trace is not None:
                trace.append(f"mode {mode}: nothing objects -> ALLOW")
            return PolicyDecision(ALLOW, ALLOW, "allowed by policy", "policy_allow", matched, [], None, flags,
                                  call.risk_score, [], errors, self.step_up_timeout, self.defer_timeout,
                                  self.version, trace or [])
        references: list[str] = []
        violations: list[str] = []
        severity = SEVERITY
        best = proposals[0]
        level = -1
        hard = False
        for p in proposals:  # one pass; the first proposal of the highest level wins the reason
            verdict = p.decision
            kind = p.kind
            if kind != "rule" and p.rule_id not in matched:
                matched.append(p.rule_id)
            if p.references:
                references.extend(r for r in p.references if r not in references)
            if verdict in VIOLATION_DECISIONS and kind not in violations:
                violations.append(kind)
            if severity[verdict] > level:
                best, level = p, severity[verdict]
            if p.hard and verdict is BLOCK:
                hard = True
        progressive = best.decision
        reason = best.reason
        code = best.code
        # Ladder: after N violations in the session, a step-up becomes a block.
        if progressive in (STEP_UP, DEFER) and h.violations >= self.ladder.block_after_violations:
            progressive = BLOCK
            reason = f"{reason} (after {h.violations} earlier violations in this session)"
            code = "repeated_violation"
            if trace is not None:
                trace.append(f"ladder: {h.violations} earlier violations -> BLOCK")

        if mode == "observe":
            decision = ALLOW
        elif mode == "block":
            decision = BLOCK if progressive in VIOLATION_DECISIONS else progressive
        elif mode == "step_up":
            decision = (BLOCK if hard else STEP_UP) if progressive in VIOLATION_DECISIONS else progressive
        else:
            decision = progressive
        would = progressive if mode == "observe" else decision
        modified = None
        if decision is MODIFY:
            modified = apply_modifications(call.tool_args, modifiers)
        if trace is not None:
            trace.append(f"mode {mode}: {progressive.value} -> {decision.value}")
        timeout = self.step_up_timeout
        defer_timeout = self.defer_timeout
        if best.timeout is not None:
            if best.decision is STEP_UP:
                timeout = best.timeout
            elif best.decision is DEFER:
                defer_timeout = best.timeout
        # The rule whose step-up holds the call says how far its approval reaches; else the defaults.
        valid, uses = self.approval_valid, self.approval_uses
        if best.decision is STEP_UP:
            valid = best.approval_valid if best.approval_valid is not None else valid
            uses = best.approval_uses if best.approval_uses is not None else uses
        provenance = None
        sent = call.arg_sources is not None or call.task is not None  # only our SDK sends these
        if (sent or best.explain) and would in VIOLATION_DECISIONS:
            # A held or blocked call says where its data came from (docs/policy.md, "Explanations").
            prov = provenance_of(call, self.trusted, normalize_args(call.tool_args))
            if best.explain:
                why = self._explain(call, prov, best.explain)
                if why:
                    reason = f"{reason}: {why}"
                    if trace is not None:
                        trace.append(f"provenance: {why}")
            if sent:
                provenance = self._summary(call, prov)
        return PolicyDecision(decision, would, reason, code, matched, references, modified, flags, call.risk_score,
                              violations, errors, timeout, defer_timeout, self.version, trace or [], valid, uses,
                              provenance)

    def _explain(self, call: CallContext, prov: Provenance | None,
                 items: tuple[tuple[str | None, frozenset[str] | None], ...]) -> str:
        """What the rule's provenance/task conditions saw, in words (at most 3 values)."""
        said: list[str] = []
        for name, states in items:
            if name == PLAN_ITEM[0]:
                verdict, why = plan_verdict(call.task, call.tool_name, prov.args if prov else
                                            normalize_args(call.tool_args), prov)
                if why and why not in said:
                    said.append(why)
                continue
            if prov is None:
                what = f"argument {name}'s" if name else "the arguments'"
                said.append(f"{what} provenance is unknown (the client sent none)")
                continue
            if name is None:
                parts = prov.all_parts()
            else:
                value = get_arg(prov.args, arg_path(name))
                parts = [] if value is MISSING else prov.parts(arg_path(name), value)
            for part in parts:
                if states is None or part.state in states:
                    text = part.sentence(self.trusted)
                    if text not in said:
                        said.append(text)
        return "; ".join(said[:3]) + ("; ..." if len(said) > 3 else "")

    def _summary(self, call: CallContext, prov: Provenance | None) -> dict[str, Any]:
        """The structured `provenance` of a held or blocked call's envelope (docs/wire.md)."""
        # (Part.summary() inlined: this runs for every held or blocked call of our SDK.)
        out: dict[str, Any] = {"args": None if prov is None else [
            {"arg": path, "value": value if type(value) is str and len(value) <= VALUE_SHOWN else shown(value),
             "state": state, "sources": sources[:MAX_SOURCES_SHOWN]}
            for path, value, state, sources in prov.all_parts()[:MAX_SUMMARY_PARTS]]}
        task = call.task if type(call.task) is dict else None
        out["plan_state"] = plan_state(call.task)
        if task is not None:
            out["task_id"] = task.get("id") if type(task.get("id")) is str else None
            plan = task.get("plan")
            tools = plan.get("tools") if type(plan) is dict else None
            # What the dashboard shows, bounded (a client may send any size of plan).
            out["plan"] = {"tools": tools[:MAX_PLAN_TOOLS], "source": plan.get("source")} \
                if type(tools) is list and type(plan) is dict else None
            verdict, why = plan_verdict(task, call.tool_name, prov.args if prov else
                                        normalize_args(call.tool_args), prov)
            out["in_plan"] = verdict
            if why:
                out["plan_reason"] = why
            text = task.get("text")
            if type(text) is str:  # only when the agent's owner opted in to sending it
                out["task_text"] = text[:MAX_TASK_TEXT]
        return out


def apply_modifications(args: dict[str, Any], rules: list[Rule]) -> dict[str, Any]:
    """The rewritten arguments: every matching modify rule, in document order."""
    out = copy.deepcopy(args) if isinstance(args, dict) else {}
    for rule in rules:
        spec = rule.modify or {}
        for name in spec.get("redact", ()):
            _set_path(out, arg_path(name), REDACTED, only_existing=True)
        for name in spec.get("remove", ()):
            _set_path(out, arg_path(name), None, remove=True)
        for name, value in (spec.get("set") or {}).items():
            _set_path(out, arg_path(name), copy.deepcopy(value))
        for item in spec.get("replace", ()):
            parts = arg_path(item["arg"])
            current = _get_path(out, parts)
            if isinstance(current, str):
                _set_path(out, parts, item["_re"].sub(item.get("with", REDACTED), current))
    return out


def _container(args: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = args
    if parts and parts[0] not in args and isinstance(args.get("kwargs"), dict) and parts[0] in args["kwargs"]:
        node = args["kwargs"]
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _get_path(args: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node = _container(args, parts)
    return node.get(parts[-1]) if node is not None else None


def _set_path(args: dict[str, Any], parts: tuple[str, ...], value: Any, *, only_existing: bool = False,
              remove: bool = False) -> None:
    node = _container(args, parts)
    if node is None:
        return
    key = parts[-1]
    if remove:
        node.pop(key, None)
    elif not only_existing or key in node:
        node[key] = value


# -- compilation -------------------------------------------------------------------------------
def compile_policy(source: str | bytes | dict[str, Any], *, version: str | None = None) -> CompiledPolicy:
    """Validate and compile. Raises PolicyValidationError (with .errors) and nothing else."""
    data, marks = load_document(source)
    try:
        return _compile(data, marks, version)
    except PolicyValidationError:
        raise
    except (RecursionError, MemoryError, SyntaxError):  # SyntaxError: Python's nesting limit
        raise PolicyValidationError([PolicyIssue("", "policy is nested too deeply")]) from None
    except Exception as exc:  # a bug of ours must still not crash the caller with a traceback
        raise PolicyValidationError([PolicyIssue("", f"policy could not be compiled: {exc!r}")]) from None


class _Checker:
    def __init__(self, marks: Marks, issues: list[PolicyIssue]) -> None:
        self.marks = marks
        self.issues = issues

    def err(self, path: Path, message: str) -> None:
        self.issues.append(self.marks.issue(path, message))

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, "expected a mapping")
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.err((*path, str(key)), f"unknown field {key!r}; expected one of: {', '.join(allowed)}")
        return value

    def action(self, value: Any, path: Path, allowed: tuple[str, ...], default: str) -> DecisionType:
        if value is None:
            return ACTIONS[default]
        if value not in allowed:
            self.err(path, f"expected one of {', '.join(allowed)}; got {value!r}")
            return ACTIONS[default]
        return ACTIONS[value]

    def number(self, value: Any, path: Path, default: float | None, low: float = 0, high: float = 1e9) -> float | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.err(path, f"expected a number between {low:g} and {high:g}")
            return default
        return float(value)

    def names(self, value: Any, path: Path) -> list[str]:
        items = value if isinstance(value, list) else None
        if items is None or not all(isinstance(v, str) and v for v in items):
            self.err(path, "expected a list of tool names (globs allowed)")
            return []
        return items


def _compile(data: Any, marks: Marks, version: str | None) -> CompiledPolicy:
    issues: list[PolicyIssue] = []
    check = _Checker(marks, issues)
    if not isinstance(data, dict):
        check.err((), "a policy document is a mapping (version:, tools:, agents:, rules: ...)")
        raise PolicyValidationError(issues)
    doc = check.mapping(data, (), TOP_LEVEL)
    if doc.get("version", 1) != 1:
        check.err(("version",), "unsupported version; this engine reads version: 1")
    name = doc.get("name", "policy")
    if not isinstance(name, str):
        check.err(("name",), "expected a string")
        name = "policy"
    if "rego" in doc:
        check.err(("rego",), "Rego sources are not supported: no official Rego evaluator installs from PyPI "
                             "for this Python (see docs/policy.md, 'Rego'); use rules or Cedar")

    defaults = check.mapping(doc.get("defaults"), ("defaults",),
                             ("unknown_tool", "unknown_intent", "require_scope", "step_up_timeout_seconds",
                              "defer_timeout_seconds", "approval_valid_seconds", "approval_uses", *MCP_DEFAULTS))
    unknown_tool = check.action(defaults.get("unknown_tool"), ("defaults", "unknown_tool"), VIOLATION_ACTIONS, "allow")
    unknown_intent = check.action(defaults.get("unknown_intent"), ("defaults", "unknown_intent"),
                                  VIOLATION_ACTIONS, "allow")
    require_scope = defaults.get("require_scope", False)
    if not isinstance(require_scope, bool):
        check.err(("defaults", "require_scope"), "expected true or false")
        require_scope = False
    step_up_timeout = check.number(defaults.get("step_up_timeout_seconds"), ("defaults", "step_up_timeout_seconds"),
                                   None, 1, 7 * 86400)
    defer_timeout = check.number(defaults.get("defer_timeout_seconds"), ("defaults", "defer_timeout_seconds"),
                                 None, 1, 7 * 86400)
    approval_valid, approval_uses = _approval_reach(defaults, ("defaults",), check)
    mcp_actions = {flag: check.action(defaults.get(key), ("defaults", key), VIOLATION_ACTIONS, "step_up")
                   for key, flag in MCP_DEFAULTS.items()}

    tiers_doc = check.mapping(doc.get("tiers"), ("tiers",), TIERS)
    tier_actions = {t: check.action(tiers_doc.get(t, DEFAULT_TIERS[t]), ("tiers", t), VIOLATION_ACTIONS,
                                    DEFAULT_TIERS[t]) for t in TIERS}

    catalogue: dict[str, dict[str, str]] = {}
    for tool, meta in check.mapping(doc.get("tools"), ("tools",)).items():
        path = ("tools", str(tool))
        meta = check.mapping(meta, path, ("tier", "classification", "output", "description"))
        tier = meta.get("tier", "medium")
        if tier not in TIERS:
            check.err((*path, "tier"), f"tier must be one of {', '.join(TIERS)}")
            continue
        classification = meta.get("classification", "read")
        if classification not in CLASSIFICATIONS:
            check.err((*path, "classification"), f"classification must be one of {', '.join(CLASSIFICATIONS)}")
            continue
        output = meta.get("output", "untrusted")
        if output not in OUTPUT_LABELS:
            check.err((*path, "output"), f"output must be one of {', '.join(OUTPUT_LABELS)} (whether the tool's "
                                         f"output is trusted data); got {output!r}")
            continue
        catalogue[str(tool)] = {"tier": tier, "classification": classification, "output": output}

    agents_exact: dict[str, Any] = {}
    agents_glob: list[tuple[Any, Any]] = []
    for agent, spec in check.mapping(doc.get("agents"), ("agents",)).items():
        path = ("agents", str(agent))
        spec = check.mapping(spec, path, ("tools", "description"))
        if "tools" not in spec:
            check.err(path, "an agent entry needs tools: [...] (the tools it may ever use)")
            continue
        matcher = name_matcher(check.names(spec["tools"], (*path, "tools")))
        if any(ch in str(agent) for ch in "*?["):
            agents_glob.append((name_matcher([str(agent)]), matcher))
        else:
            agents_exact[str(agent)] = matcher

    intents: dict[str, _Intent] = {}
    for intent, spec in check.mapping(doc.get("intents"), ("intents",)).items():
        path = ("intents", str(intent))
        spec = check.mapping(spec, path, ("tools", "on_violation", "description"))
        if "tools" not in spec:
            check.err(path, "an intent needs tools: [...] (the tools that fit it)")
            continue
        intents[str(intent)] = _Intent(
            name_matcher(check.names(spec["tools"], (*path, "tools"))),
            check.action(spec.get("on_violation"), (*path, "on_violation"), VIOLATION_ACTIONS, "step_up"))

    prog = check.mapping(doc.get("progressive"), ("progressive",),
                         ("scope_first", "scope_repeat", "intent_repeat", "block_after_violations",
                          "risk_step_up", "risk_block"))
    ladder = Ladder(
        scope_first=check.action(prog.get("scope_first"), ("progressive", "scope_first"), VIOLATION_ACTIONS, "step_up"),
        scope_repeat=check.action(prog.get("scope_repeat"), ("progressive", "scope_repeat"), VIOLATION_ACTIONS, "block"),
        intent_repeat=check.action(prog.get("intent_repeat"), ("progressive", "intent_repeat"), VIOLATION_ACTIONS,
                                   "block"),
        block_after_violations=int(check.number(prog.get("block_after_violations"),
                                                ("progressive", "block_after_violations"), 3, 1, 1e6) or 3),
        risk_step_up=check.number(prog.get("risk_step_up"), ("progressive", "risk_step_up"), 0.7, 0, 1) or 0.0,
        risk_block=check.number(prog.get("risk_block"), ("progressive", "risk_block"), 0.9, 0, 1) or 0.0,
    )
    if "risk_step_up" in prog and "risk_block" not in prog:
        ladder.risk_block = max(ladder.risk_block, ladder.risk_step_up)

    markers = MarkerTable()
    compiler = Compiler(marks, catalogue, markers)
    rules: list[Rule] = []
    rules_doc = doc.get("rules", [])
    if not isinstance(rules_doc, list):
        check.err(("rules",), "rules must be a list")
        rules_doc = []
    seen: set[str] = set()
    for i, raw in enumerate(rules_doc):
        rule = _compile_rule(raw, ("rules", i), check, compiler, seen)
        if rule is not None:
            rules.append(rule)
    issues.extend(compiler.issues)

    tasks = compile_tasks(doc.get("tasks"), check) if "tasks" in doc else []

    cedar = None
    if "cedar" in doc:
        from thoth.policy.cedar_source import CedarSource

        cedar = CedarSource.build(doc["cedar"], ("cedar",), check)

    if issues:
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise PolicyValidationError(issues)
    canonical = json.dumps(doc, sort_keys=True, default=str).encode()
    return CompiledPolicy(
        name=name, version=version, digest=hashlib.sha256(canonical).hexdigest()[:16], document=doc,
        rules=rules, catalogue=catalogue, tier_actions=tier_actions, unknown_tool=unknown_tool,
        unknown_intent=unknown_intent, require_scope=require_scope, step_up_timeout=step_up_timeout,
        defer_timeout=defer_timeout, agents_exact=agents_exact, agents_glob=agents_glob, intents=intents,
        ladder=ladder, markers=markers, namespace=compiler.consts, cedar=cedar, approval_valid=approval_valid,
        approval_uses=approval_uses, trusted=compiler.trusted, tasks=tasks, mcp_actions=mcp_actions,
    )


RULE_FIELDS = ("id", "description", "when", "action", "reason", "references", "modify", "hard", "enabled",
               "code", "timeout_seconds", "approval_valid_seconds", "approval_uses")
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def _compile_rule(raw: Any, path: Path, check: _Checker, compiler: Compiler, seen: set[str]) -> Rule | None:
    spec = check.mapping(raw, path, RULE_FIELDS)
    if not spec:
        if isinstance(raw, dict):
            check.err(path, "empty rule")
        return None
    ok = True
    rule_id = spec.get("id")
    if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
        check.err((*path, "id"), "every rule needs an id (letters, digits, _ . : -)")
        ok = False
    elif rule_id in seen:
        check.err((*path, "id"), f"duplicate rule id {rule_id!r}")
        ok = False
    else:
        seen.add(rule_id)
    action = spec.get("action")
    if action not in ACTIONS:
        check.err((*path, "action"), f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
        ok = False
    if "when" not in spec:
        check.err(path, "every rule needs a condition (when: ...)")
        return None
    compiler.explain = []
    cond = compiler.code(spec["when"], (*path, "when"))
    explain, compiler.explain = tuple(compiler.explain), None
    description = spec.get("description", "")
    reason = spec.get("reason", description or f"rule {rule_id}")
    for key in ("description", "reason", "code"):
        if key in spec and not isinstance(spec[key], str):
            check.err((*path, key), "expected a string")
            ok = False
    references = spec.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        check.err((*path, "references"), "expected a list of strings, e.g. ['SOC2 CC6.1']")
        ok = False
    for key in ("hard", "enabled"):
        if key in spec and not isinstance(spec[key], bool):
            check.err((*path, key), "expected true or false")
            ok = False
    timeout = check.number(spec.get("timeout_seconds"), (*path, "timeout_seconds"), None, 1, 7 * 86400)
    approval_valid, approval_uses = _approval_reach(spec, path, check)
    modify = None
    if action == "modify":
        modify = _modify_spec(spec.get("modify"), (*path, "modify"), check)
        ok = ok and modify is not None
    elif "modify" in spec:
        check.err((*path, "modify"), "modify: is only allowed with action: modify")
        ok = False
    if not ok or cond is None or not spec.get("enabled", True):
        return None
    assert isinstance(rule_id, str) and isinstance(action, str)
    return Rule(id=rule_id, description=str(description), action=action, decision=ACTIONS[action], source=cond,
                reason=str(reason), references=tuple(references), code=str(spec.get("code", f"rule_{action}")),
                hard=bool(spec.get("hard", False)), modify=modify, timeout=timeout,
                constraint=tool_constraint(spec["when"]), rule_id=rule_id, approval_valid=approval_valid,
                approval_uses=approval_uses, explain=explain)


MAX_APPROVAL_USES = 1000


def _approval_reach(spec: dict[str, Any], path: Path, check: _Checker) -> tuple[float | None, int | None]:
    """approval_valid_seconds and approval_uses of a rule or of defaults (None: not set there)."""
    valid = check.number(spec.get("approval_valid_seconds"), (*path, "approval_valid_seconds"), None, 1, 7 * 86400)
    raw = spec.get("approval_uses")
    uses = None
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_APPROVAL_USES:
            check.err((*path, "approval_uses"), f"expected a whole number between 1 and {MAX_APPROVAL_USES}")
        else:
            uses = raw
    return valid, uses


def _modify_spec(value: Any, path: Path, check: _Checker) -> dict[str, Any] | None:
    spec = check.mapping(value, path, ("redact", "remove", "set", "replace"))
    if not spec:
        check.err(path, "action modify needs modify: {redact: [...], remove: [...], set: {...}, replace: [...]}")
        return None
    before = len(check.issues)
    out: dict[str, Any] = {}
    for key in ("redact", "remove"):
        if key in spec:
            out[key] = check.names(spec[key], (*path, key))
    if "set" in spec:
        if not isinstance(spec["set"], dict):
            check.err((*path, "set"), "expected a mapping of argument -> new value")
        else:
            out["set"] = {str(k): v for k, v in spec["set"].items()}
    if "replace" in spec:
        items = spec["replace"] if isinstance(spec["replace"], list) else None
        replaces = []
        for i, item in enumerate(items or []):
            sub = (*path, "replace", i)
            if not isinstance(item, dict) or not isinstance(item.get("arg"), str) \
                    or not isinstance(item.get("pattern"), str) or not isinstance(item.get("with", ""), str):
                check.err(sub, "expected {arg: NAME, pattern: REGEX, with: TEXT}")
                continue
            try:
                replaces.append({**item, "_re": re.compile(item["pattern"])})
            except re.error as exc:
                check.err((*sub, "pattern"), f"bad regex: {exc}")
        if items is None:
            check.err((*path, "replace"), "expected a list of {arg, pattern, with}")
        out["replace"] = replaces
    return out if len(check.issues) == before else None
