"""Cedar policies as an extra policy source (through cedarpy).

Input schema (docs/policy.md, "Cedar"): principal Agent::"<agent_id>", action
Action::"<tool_name>", resource Tool::"<tool_name>", and a context of derived facts (never the
raw history, whose conversion cost grows with the session). A Deny blocks; any evaluation error
(Cedar skips an erroring forbid and would otherwise allow) also blocks.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from thoth.models import DecisionType
from thoth.policy.decision import Proposal

if TYPE_CHECKING:
    from thoth.policy.context import CallContext, SessionHistory
    from thoth.policy.loader import Path

MAX_DEPTH = 5
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def cedar_value(value: Any, depth: int = 0) -> Any:
    """A JSON value Cedar accepts: floats become strings (Cedar has only 64-bit Longs), None is
    dropped, lists become sets, nesting is capped."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if LONG_MIN <= value <= LONG_MAX else str(value)
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else (str(int(value)) if value.is_integer() else repr(value))
    if depth >= MAX_DEPTH:
        return str(value)[:1000]
    if isinstance(value, dict):
        return {str(k): cedar_value(v, depth + 1) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [cedar_value(v, depth + 1) for v in value if v is not None]
    return str(value)[:1000]


class CedarSource:
    def __init__(self, policies: Any, entities: Any, names: dict[str, str]) -> None:
        self.policies = policies
        self.entities = entities
        self.names = names  # cedar's policyN -> our id (from @id annotations)

    @classmethod
    def build(cls, spec: Any, path: Path, check: Any) -> CedarSource | None:
        if isinstance(spec, str):
            spec = {"policies": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("policies"), str):
            check.err(path, "cedar takes {policies: <Cedar policy text>, entities: [...]?}")
            return None
        extra = set(spec) - {"policies", "entities"}
        if extra:
            check.err(path, f"unknown cedar field(s) {sorted(extra)}")
            return None
        try:
            import cedarpy
        except ImportError:
            check.err(path, "Cedar policies need cedarpy: the 'cedar' extra: pip install '.[cedar]' in a clone of Thoth")
            return None
        text = spec["policies"]
        try:
            policies = cedarpy.PolicySet.from_str(text)
            parsed = json.loads(cedarpy.policies_to_json_str(text))
        except Exception as exc:
            check.err((*path, "policies"), f"Cedar syntax error: {exc}")
            return None
        names = {pid: (p.get("annotations") or {}).get("id", pid)
                 for pid, p in parsed.get("staticPolicies", {}).items()}
        entities_doc = spec.get("entities", [])
        try:
            entities = cedarpy.Entities.from_json_str(json.dumps(entities_doc))
        except Exception as exc:
            check.err((*path, "entities"), f"bad Cedar entities: {exc}")
            return None
        return cls(policies, entities, names)

    @staticmethod
    def request(call: CallContext, h: SessionHistory, in_scope: bool, in_intent: bool,
                meta: dict[str, str] | None) -> dict[str, Any]:
        risk = call.risk_score
        return {
            "principal": {"type": "Agent", "id": call.agent_id or "unknown"},
            "action": {"type": "Action", "id": call.tool_name or "unknown"},
            "resource": {"type": "Tool", "id": call.tool_name or "unknown"},
            "context": {
                "tool": call.tool_name, "tenant": call.tenant_id, "user": call.user_id,
                "environment": call.environment, "intent": call.session_intent or "",
                "args": cedar_value(call.tool_args if isinstance(call.tool_args, dict) else {}),
                "risk": -1 if risk is None or not math.isfinite(risk) else int(round(risk * 100)),
                "tier": (meta or {}).get("tier", ""), "classification": (meta or {}).get("classification", ""),
                "in_scope": in_scope, "in_intent": in_intent,
                "session": {"calls": h.n, "tools": sorted(h.counts), "violations": h.violations},
            },
        }

    def evaluate(self, call: CallContext, h: SessionHistory, in_scope: bool, in_intent: bool,
                 meta: dict[str, str] | None, out: list[Any], trace: list[str] | None) -> None:
        import cedarpy

        try:
            result = cedarpy.is_authorized(self.request(call, h, in_scope, in_intent, meta), self.policies,
                                           self.entities)
            errors = list(result.diagnostics.errors)
            allowed = bool(result.allowed)
            reasons = [self.names.get(r, r) for r in result.diagnostics.reasons]
        except Exception as exc:
            errors, allowed, reasons = [str(exc)], False, []
        if errors:
            out.append(Proposal(DecisionType.BLOCK, "error", "cedar.error",
                                 "a Cedar policy could not be evaluated", "policy_evaluation_error", hard=True))
            if trace is not None:
                trace.append(f"cedar: evaluation error(s) {errors} -> BLOCK")
        if not allowed:
            ids = ",".join(reasons) or "no permit matched"
            out.append(Proposal(DecisionType.BLOCK, "source", f"cedar.{ids}", f"denied by Cedar policy {ids}",
                                 "cedar_deny", hard=True))
            if trace is not None:
                trace.append(f"cedar: Deny ({ids}) -> BLOCK")
        elif trace is not None:
            trace.append(f"cedar: Allow ({', '.join(reasons)})")
