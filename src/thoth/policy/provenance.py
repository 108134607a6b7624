"""Where each argument value of a call came from, as the policy sees it (docs/policy.md,
"Provenance and task conditions").

The SDK sends, per argument path, the places the value was seen before the call (`arg_sources`,
docs/wire.md). The server turns that into one of five states per value, applying the policy
catalogue's trust labels to the tool sources:

  user       the value appears in the user's task (whatever else also holds it)
  trusted    not in the task, but in the output of a tool catalogued `output: trusted`
  untrusted  only in the output of untrusted tools (uncatalogued tools are untrusted)
  model      seen nowhere (the list is empty): the model made it up or computed it
  unknown    not looked up: no `arg_sources` at all (published clients), or no entry for it

Nothing here runs for a request without `arg_sources` beyond one `is None` test: a condition
that names a provenance state asks `provenance_of(call, labels)`, which answers None at once.
With the fields, the work is done once per call and per policy, on first use, and cached on
the CallContext.
"""

from __future__ import annotations

from typing import Any

USER, TRUSTED, UNTRUSTED, MODEL, UNKNOWN = "user", "trusted", "untrusted", "model", "unknown"
STATES = (USER, TRUSTED, UNTRUSTED, MODEL, UNKNOWN)
OUTPUT_LABELS = ("trusted", "untrusted")
# Bounds on what one call's arguments may make us walk (the wire caps depth at 64 already).
MAX_PARTS = 1000
MAX_DEPTH = 6
VALUE_SHOWN = 60  # characters of a value quoted in a reason
MAX_SOURCES_SHOWN = 10  # sources of one value listed in a decision's summary


def trusted_tools(catalogue: dict[str, dict[str, str]]) -> frozenset[str]:
    """The tools whose output the catalogue labels trusted (every other tool's is untrusted)."""
    return frozenset(name for name, meta in catalogue.items() if meta.get("output") == "trusted")


def parse_source(source: Any) -> tuple[str, int] | None:
    """("task", 0) or (tool name, call number) of one wire source; None if malformed."""
    if type(source) is not str:
        return None
    if source == "task":
        return ("task", 0)
    if not source.startswith("tool:"):
        return None
    name, sep, number = source[5:].rpartition("#")
    if not sep or not name or not number.isdigit():
        return None
    return (name, int(number))


# Tool name of each wire source string seen ("" when malformed): a session's calls name the same
# outputs again and again, and parsing is most of the cost of a state. Bounded: cleared when full.
_TOOL_OF: dict[str, str] = {}
_TOOL_OF_MAX = 100_000


def _tool_of(source: str) -> str:
    name, sep, number = source[5:].rpartition("#") if source.startswith("tool:") else ("", "", "")
    if not sep or not number.isdigit():
        name = ""
    if len(_TOOL_OF) >= _TOOL_OF_MAX:
        _TOOL_OF.clear()
    _TOOL_OF[source] = name
    return name


def state_of(sources: Any, trusted: frozenset[str]) -> str:
    """The state of one value from its wire source list: user > trusted > untrusted > model.
    A non-list, or a list of nothing but malformed entries, is `unknown` (we cannot tell)."""
    if type(sources) is not list:
        return UNKNOWN
    if not sources:
        return MODEL
    best = UNKNOWN
    tool_of = _TOOL_OF.get
    for source in sources:
        if type(source) is not str:
            continue
        if source == "task":
            return USER
        name = tool_of(source)
        if name is None:
            name = _tool_of(source)
        if not name:
            continue
        if name in trusted:
            best = TRUSTED
        elif best is UNKNOWN:
            best = UNTRUSTED
    return best


class Part(tuple[str, Any, str, list[Any]]):
    """One value of an argument (the argument itself, or a list element / object member):
    (path, value, state, sources). A tuple: one call may have hundreds, made on the hot path."""

    __slots__ = ()

    @property
    def path(self) -> str:
        return self[0]

    @property
    def value(self) -> Any:
        return self[1]

    @property
    def state(self) -> str:
        return self[2]

    @property
    def sources(self) -> list[Any]:
        return self[3]

    def summary(self) -> dict[str, Any]:
        """For the decision envelope: the wire's own source strings ("task", "tool:NAME#N")."""
        return {"arg": self[0], "value": shown(self[1]), "state": self[2], "sources": self[3][:MAX_SOURCES_SHOWN]}

    def sentence(self, trusted: frozenset[str]) -> str:
        """e.g. "recipients[0] 'x@y.com' appeared only in the output of read_inbox (call 3), untrusted"."""
        path, value, state, sources = self
        head = f"{path} {shown(value)!r}"
        if state == UNKNOWN:
            return f"{head}: provenance unknown (not reported by the client)"
        if state == MODEL:
            return f"{head} appeared nowhere before this call (model-made)"
        if state == USER:
            return f"{head} appears in the user's task"
        tools = [p for p in map(parse_source, sources) if p is not None and p[0] != "task"]
        if state == TRUSTED:
            tools = [p for p in tools if p[0] in trusted]
        where = ", ".join(f"{name} (call {n})" for name, n in tools[:3]) + (" ..." if len(tools) > 3 else "")
        if state == TRUSTED:
            return f"{head} appeared in the output of {where}, trusted"
        return f"{head} appeared only in the output of {where}, untrusted"


_new_part = tuple.__new__


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= VALUE_SHOWN else text[:VALUE_SHOWN - 3] + "..."


class Provenance:
    """One call's provenance under one policy's catalogue. Parts per argument are computed on
    first use (most conditions name one or two arguments)."""

    __slots__ = ("sources", "args", "trusted", "_parts", "_all")

    def __init__(self, sources: dict[str, Any], args: dict[str, Any], trusted: frozenset[str]) -> None:
        self.sources = sources
        self.args = args
        self.trusted = trusted
        self._parts: dict[Any, list[Part]] = {}
        self._all: list[Part] | None = None

    def parts(self, steps: tuple[str, ...], value: Any) -> list[Part]:
        """The parts of the argument at `steps` (its value given, MISSING-free). A string or
        number is one part; a list or object is walked, each scalar leaf a part; an empty
        container is one `unknown` part (nothing in it was looked up)."""
        key: Any = steps[0] if len(steps) == 1 else steps
        found = self._parts.get(key)
        if found is not None:
            return found
        kind = type(value)
        if kind is not list and kind is not dict and kind is not tuple and len(steps) == 1:
            name = steps[0]
            src = self.sources.get(name)  # the common case: a top-level string or number
            if src is None:
                found = [_new_part(Part, (name, value, UNKNOWN, []))]
            else:
                found = [_new_part(Part, (name, value, state_of(src, self.trusted),
                                          src if type(src) is list else []))]
        else:
            found = []
            path = _path_text(steps)
            _walk(path, value, self.sources, self.trusted, found, 0)
            if not found:
                found.append(_new_part(Part, (path, value, UNKNOWN, [])))
        self._parts[key] = found
        return found

    def all_parts(self) -> list[Part]:
        """Every argument's parts (at most MAX_PARTS), in argument order."""
        if self._all is None:
            out: list[Part] = []
            cached, sources, trusted = self._parts, self.sources, self.trusted
            for name, value in self.args.items():
                if len(out) >= MAX_PARTS:
                    break
                found = cached.get(name)
                if found is None:
                    kind = type(value)
                    if kind is str or kind is int or kind is float:  # inline: the common case
                        src = sources.get(name)
                        found = [_new_part(Part, (name, value, UNKNOWN, []) if src is None else
                                           (name, value, state_of(src, trusted), src if type(src) is list else []))]
                        cached[name] = found
                    else:
                        found = self.parts((str(name),), value)
                out.extend(found)
            self._all = out
        return self._all


def _path_text(steps: tuple[str, ...]) -> str:
    text = steps[0]
    for step in steps[1:]:
        text += f"[{step}]" if step.isdigit() else f".{step}"
    return text


def _walk(path: str, value: Any, sources: dict[str, Any], trusted: frozenset[str], out: list[Part],
          depth: int) -> None:
    kind = type(value)
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return
        for i, item in enumerate(value[:MAX_PARTS]):
            if len(out) >= MAX_PARTS:
                return
            _walk(f"{path}[{i}]", item, sources, trusted, out, depth + 1)
        return
    if kind is dict:
        if depth >= MAX_DEPTH:
            return
        for key, item in list(value.items())[:MAX_PARTS]:
            if len(out) >= MAX_PARTS:
                return
            _walk(f"{path}.{key}", item, sources, trusted, out, depth + 1)
        return
    found = sources.get(path)
    if found is None:
        out.append(_new_part(Part, (path, value, UNKNOWN, [])))
    else:
        out.append(_new_part(Part, (path, value, state_of(found, trusted), found if type(found) is list else [])))


def provenance_of(c: Any, trusted: frozenset[str], args: dict[str, Any]) -> Provenance | None:
    """The call's Provenance for this trust labelling, cached on the call; None without `arg_sources`."""
    sources = c.arg_sources
    if sources is None:
        return None
    cached = c.provenance
    if cached is not None and cached.trusted is trusted:
        return cached  # type: ignore[no-any-return]
    made = Provenance(sources, args, trusted)
    c.provenance = made
    return made


def states_of(c: Any, trusted: frozenset[str], args: dict[str, Any], steps: tuple[str, ...],
              value: Any) -> list[str]:
    """The states of the argument's parts; ["unknown"] when the call carries no `arg_sources`."""
    prov = provenance_of(c, trusted, args)
    if prov is None:
        return [UNKNOWN]
    return [p.state for p in prov.parts(steps, value)]


# ---- the task's plan --------------------------------------------------------------------------

PLAN_PRESENT, PLAN_NONE, PLAN_UNKNOWN = "present", "none", "unknown"


def plan_state(task: Any) -> str:
    """`unknown`: the call carries no task (published clients); `none`: a task without a plan
    (none could be made, or a malformed one); `present`: a plan with a tools list."""
    if task is None:
        return PLAN_UNKNOWN
    plan = task.get("plan") if type(task) is dict else None
    if type(plan) is dict and type(plan.get("tools")) is list:
        return PLAN_PRESENT
    return PLAN_NONE
