"""Condition kinds about where the call's data came from and what the user's task allows
(docs/policy.md, "Provenance and task conditions"):

- `args: {NAME: {source: STATES}}`: the argument test on provenance (compiled here, reached
  from cond_args.gen_args);
- `flow: {from: STATES, to: {tool | classification | tier: ...}}`: data of these states reaches
  this call (any argument);
- `in_plan: true | false`: the task's plan allows / does not allow this call (needs a plan);
- `plan: present | none | unknown`: whether the call's task has a plan.

`unknown` (a published client that sends no provenance or task) matches only a test that names
it, so a policy using these kinds decides such clients' calls exactly as before.
"""

from __future__ import annotations

from typing import Any

from thoth.policy.cond_base import CHECK, CODE, Check, CompilerBase, Kind, arg_path, get_arg
from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.loader import Path
from thoth.policy.provenance import (
    PLAN_NONE,
    PLAN_PRESENT,
    PLAN_UNKNOWN,
    STATES,
    UNKNOWN,
    UNTRUSTED,
    plan_state,
    provenance_of,
    trusted_tools,
)
from thoth.policy.task_plan import plan_verdict
from thoth.policy.values import MISSING

PLAN_STATES = (PLAN_PRESENT, PLAN_NONE, PLAN_UNKNOWN)
# The explanation item of a plan condition (no argument can be named so).
PLAN_ITEM: tuple[str | None, frozenset[str] | None] = ("\x00plan", None)


class ProvenanceConditions(CompilerBase):
    _trusted: frozenset[str] | None = None
    # Per rule being compiled: what its provenance conditions name, for the decision's reason
    # (engine._compile_rule resets and reads it). Items: (argument name or None for every
    # argument, the states tested) or PLAN_ITEM.
    explain: list[tuple[str | None, frozenset[str] | None]] | None = None

    @property
    def trusted(self) -> frozenset[str]:
        if self._trusted is None:
            self._trusted = trusted_tools(self.catalogue)
        return self._trusted

    def _note(self, item: tuple[str | None, frozenset[str] | None]) -> None:
        if self.explain is not None:
            self.explain.append(item)

    def states(self, value: Any, path: Path, what: str) -> tuple[str, frozenset[str]] | None:
        """A state test: STATE, [STATES] (any part), {any: [...]} or {all: [...]}."""
        quantifier = "any"
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in ("any", "all"):
                self.err(path, f"{what} takes a state, a list of states, {{any: [...]}} or {{all: [...]}}")
                return None
            (quantifier, value), = value.items()
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in STATES]
        if not items or bad:
            self.err(path, f"{what}: expected one or more of {', '.join(STATES)}; got {bad or value!r}")
            return None
        return quantifier, frozenset(items)

    def source_check(self, name: str, value: Any, path: Path) -> Check | None:
        """`args: {NAME: {source: ...}}`. The argument's parts are its value (a string or
        number) or, for a list or object, each scalar inside it (`NAME[0]`, `NAME.key`); `any`
        (the default) holds when some part has one of the states, `all` when every part does.
        A missing argument fails, like every other argument test."""
        parsed = self.states(value, path, "source")
        if parsed is None:
            return None
        quantifier, wanted = parsed
        steps = arg_path(name)
        trusted = self.trusted
        unknown_matches = UNKNOWN in wanted
        self._note((name, wanted))
        every = quantifier == "all"

        def check(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            value = get_arg(a, steps)
            if value is MISSING:
                return False
            prov = provenance_of(c, trusted, a)
            if prov is None:  # no arg_sources: the argument's one part is unknown
                return unknown_matches
            parts = prov.parts(steps, value)
            if every:
                return all(p.state in wanted for p in parts)
            return any(p.state in wanted for p in parts)

        return check

    def gen_flow(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, dict):
            self.err(path, "flow takes {from: STATES, to: {tool: ..., classification: ..., tier: ...}}")
            return None
        extra = set(value) - {"from", "to"}
        if extra:
            self.err(path, f"unknown flow field(s) {sorted(extra)}; expected from, to")
            return None
        parsed = self.states(value.get("from", UNTRUSTED), (*path, "from"), "flow from")
        if parsed is None:
            return None
        if parsed[0] == "all":
            self.err((*path, "from"), "flow from takes states (any argument carrying them), not {all: ...}")
            return None
        wanted = parsed[1]
        target = "True"
        if "to" in value:
            to = value["to"]
            if not isinstance(to, dict) or not to or set(to) - {"tool", "classification", "tier"}:
                self.err((*path, "to"), "flow to takes {tool: ..., classification: ..., tier: ...} (one or more)")
                return None
            made = [getattr(self, f"gen_{key}")(to[key], (*path, "to", key)) for key in to]
            if any(m is None for m in made):
                return None
            target = " and ".join(made)
        trusted = self.trusted
        unknown_matches = UNKNOWN in wanted
        self._note((None, wanted))

        def flows(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            prov = provenance_of(c, trusted, a)
            if prov is None:
                return unknown_matches and bool(a)
            return any(p.state in wanted for p in prov.all_parts())

        return f"({target} and {self.const(flows)}(c, a, h))"

    def check_in_plan(self, value: Any, path: Path) -> Check | None:
        if not isinstance(value, bool):
            self.err(path, "in_plan takes true or false (both need a plan; see plan: none / unknown)")
            return None
        trusted = self.trusted
        self._note(PLAN_ITEM)

        def in_plan(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            if c.task is None:
                return False
            verdict = plan_verdict(c.task, c.tool_name, a, provenance_of(c, trusted, a))[0]
            return verdict is value

        return in_plan

    def gen_plan(self, value: Any, path: Path) -> str | None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in PLAN_STATES]
        if not items or bad:
            self.err(path, f"plan: expected one or more of {', '.join(PLAN_STATES)}; got {bad or value!r}")
            return None
        self._note(PLAN_ITEM)
        if items == [PLAN_UNKNOWN]:
            return "(c.task is None)"
        return f"({self.const(plan_state)}(c.task) in {self.const(frozenset(items))})"


KINDS = {
    "flow": Kind(CODE, ProvenanceConditions.gen_flow),
    "in_plan": Kind(CHECK, ProvenanceConditions.check_in_plan),
    "plan": Kind(CODE, ProvenanceConditions.gen_plan),
}
