"""What every family of condition kinds shares: the per-call state, the compiler's bookkeeping,
and the table entry a kind is registered with.

A condition kind compiles in one of three forms (`Kind.form`):
- CODE: a Python expression over the locals `ev` (Eval), `c` (CallContext), `a` (the arguments
  dict), `h` (SessionHistory), `in_scope` and `in_intent`, inlined into the rule's function;
- CHECK: a closure `f(c, a, h) -> bool` called from that expression;
- EVAL: a closure `f(ev) -> bool` (expressions, which need the whole Eval).
Every value taken from the policy document is bound to a generated name (`_k12`) in the
namespace, never written into the source, so no document text can become code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.loader import Marks, Path
from thoth.policy.markers import MarkerTable
from thoth.policy.values import MISSING


class Eval:
    """Per-call state shared by every condition of one evaluation."""

    __slots__ = ("c", "h", "args", "in_scope", "in_intent")
    c: CallContext
    h: SessionHistory
    args: dict[str, Any]
    in_scope: bool
    in_intent: bool

    def __init__(self, c: CallContext, h: SessionHistory, in_scope: bool, in_intent: bool,
                 args: dict[str, Any] | None = None) -> None:
        self.c = c
        self.h = h
        self.args = normalize_args(c.tool_args) if args is None else args
        self.in_scope = in_scope
        self.in_intent = in_intent


def normalize_args(args: Any) -> dict[str, Any]:
    """The arguments as a dict; for the wire's {"args": [...], "kwargs": {...}}, kwargs' names too."""
    if type(args) is not dict:
        return args if isinstance(args, dict) else {}
    if "kwargs" in args:
        kwargs = args["kwargs"]
        if isinstance(kwargs, dict):
            return {**kwargs, **args}
    return args


Cond = Callable[[Eval], bool]
Check = Callable[[CallContext, dict[str, Any], SessionHistory], bool]  # closures called from generated code
ArgsPred = Callable[[dict[str, Any]], bool]
ValuePred = Callable[[Any], bool]


def get_arg(args: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """args["a"]["b"] for "a.b"; also looks inside the wire's {"args":[...], "kwargs":{...}} form."""
    value: Any = args
    for i, part in enumerate(parts):
        if isinstance(value, dict):
            if part in value:
                value = value[part]
                continue
            if i == 0 and isinstance(value.get("kwargs"), dict) and part in value["kwargs"]:
                value = value["kwargs"][part]
                continue
            return MISSING
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        return MISSING
    return value


def arg_path(name: str) -> tuple[str, ...]:
    return tuple(name.split(".")) if name else ()


CODE, CHECK, EVAL = "code", "check", "eval"


class Kind(NamedTuple):
    """One condition kind: how it compiles (CODE, CHECK or EVAL) and the compiler method that does it."""

    form: str
    build: Callable[[Any, Any, Path], Any]  # (compiler, the document's value, its path) -> source or closure


class CompilerBase:
    """The compiler's state: problems found (with their paths) and the generated names' values."""

    def __init__(self, marks: Marks, catalogue: dict[str, dict[str, str]], markers: MarkerTable) -> None:
        self.marks = marks
        self.catalogue = catalogue
        self.markers = markers
        self.issues: list[Any] = []
        self.consts: dict[str, Any] = {}

    def err(self, path: Path, message: str) -> None:
        self.issues.append(self.marks.issue(path, message))

    def const(self, value: Any) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def code(self, node: Any, path: Path) -> str | None:  # conditions.Compiler: a condition's source
        raise NotImplementedError

    def source_check(self, name: str, value: Any, path: Path) -> Any:  # cond_provenance: args' `source:`
        raise NotImplementedError


def build_function(source: str, namespace: dict[str, Any], name: str) -> Any:
    """Compile generated source (identifiers and generated names only) in `namespace`."""
    scope = {**namespace, "MISS": MISSING, "get_arg": get_arg, "Eval": Eval, "__builtins__": {"bool": bool, "type": type,
             "str": str, "int": int, "len": len, "Exception": Exception}}
    exec(compile(source, "<thoth-policy>", "exec"), scope)  # noqa: S102 - no document text in `source`
    return scope[name]
