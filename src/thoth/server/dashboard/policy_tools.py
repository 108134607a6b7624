"""Policy editing helpers: validation with line numbers, diffs, and replaying stored calls
through a draft ("this draft would have blocked 12 more calls")."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SIMULATION_LIMIT = 20_000


class EngineMissing(RuntimeError):
    """thoth.policy is not importable in this installation."""


def _engine() -> Any:
    try:
        import thoth.policy as engine
    except ImportError as exc:  # the policy package ships with the server; say so plainly if absent
        raise EngineMissing("the policy engine (thoth.policy) is not installed") from exc
    return engine


def starter() -> str:
    """What the editor shows for a tenant without a policy: the engine's default, to edit."""
    try:
        from thoth.policy.defaults import DEFAULT_POLICY_YAML
    except ImportError:
        return ""
    return str(DEFAULT_POLICY_YAML)


def validate(text: str) -> list[dict[str, Any]]:
    """[] when the draft compiles, else [{"line": int | None, "message": str}, ...]."""
    engine = _engine()
    if not text.strip():
        return [{"line": None, "message": "the policy is empty"}]
    try:
        engine.compile_policy(text)
    except engine.PolicyValidationError as exc:
        errors = getattr(exc, "errors", None) or [str(exc)]
        return [_error(e) for e in errors]
    return []


def _error(e: Any) -> dict[str, Any]:
    if isinstance(e, dict):
        return {"line": e.get("line"), "message": str(e.get("message") or e)}
    line = getattr(e, "line", None)
    message = getattr(e, "message", None)
    return {"line": line if isinstance(line, int) else None, "message": str(message or e)}


def diff(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """Unified diff as (kind, line) pairs: kind is add, del, hunk or ctx (rendered as text)."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm=""):
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


@dataclass
class Simulation:
    calls: int = 0
    sessions: int = 0
    days: int = 0
    truncated: bool = False
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    newly_blocked: int = 0
    newly_allowed: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


def _strength(decision: str) -> int:
    return {"ALLOW": 0, "MODIFY": 1, "STEP_UP": 2, "DEFER": 2, "BLOCK": 3}.get(decision, 3)


def simulate(db: Any, tenant_id: str, draft: str, days: int, limit: int = SIMULATION_LIMIT) -> Simulation:
    """Replay the tenant's most recent sessions of the last `days` days through the draft, with the
    same selection and bounds as POST /v1/policies/simulate (thoth.server.simulation)."""
    from thoth.server import simulation

    policy = _engine().compile_policy(draft)
    result = simulation.run(db, tenant_id, policy, days=days, max_calls=limit, max_items=25)
    sim = Simulation(calls=int(result["evaluated"]), sessions=int(result["sessions"]), days=days,
                     truncated=bool(result["truncated"]), newly_blocked=int(result["newly_blocked"]),
                     newly_allowed=int(result["newly_allowed"]))
    for change in result["changes"]:
        sim.changes[(change["current"], change["candidate"])] = change["count"]
    sim.examples = [{"session_id": i["session_id"], "agent_id": i["agent_id"], "tool_name": i["tool_name"],
                     "was": i["current"], "now": i["candidate"], "reason": i["reason"],
                     "rules": list(i.get("matched_rule_ids") or [])} for i in result["items"]]
    return sim
