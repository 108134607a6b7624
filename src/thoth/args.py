"""Tool arguments on the wire: how a Python call becomes `tool_args`, and how MODIFY maps back.

wire.md: one dict argument -> that dict; keyword arguments only -> the kwargs; anything else ->
`{"args": [...], "kwargs": {...}}`. Values are made JSON-safe with nesting capped at 5 levels.
Arguments are untrusted: nothing here evaluates them, and odd objects become their `repr`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 5
TRUNCATED = "<truncated: nested deeper than 5 levels>"
_MAX_REPR = 1000


class ModificationError(ValueError):
    """A MODIFY decision whose arguments cannot be mapped onto the call."""


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy of `value` that json.dumps accepts, containers nested at most MAX_DEPTH deep."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # the common case, fast
        return value
    if kind is dict and depth < MAX_DEPTH:
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            return TRUNCATED
        if isinstance(value, Mapping):
            return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(v, depth + 1) for v in items]
    if isinstance(value, bytes | bytearray):
        return bytes(value[:_MAX_REPR]).decode("utf-8", errors="replace")
    # Pydantic models and dataclasses keep their structure; anything else is shown, not run.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json_safe(dump(), depth)
        except Exception:  # noqa: BLE001 - a broken model_dump must not break the call
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), depth)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text[:_MAX_REPR]


def to_wire_args(args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `tool_args` object for a call `fn(*args, **kwargs)`."""
    if len(args) == 1 and not kwargs and isinstance(args[0], Mapping):
        return json_safe(args[0])  # type: ignore[no-any-return]
    if not args:
        return json_safe(dict(kwargs))  # type: ignore[no-any-return]
    return {"args": json_safe(list(args)), "kwargs": json_safe(dict(kwargs))}


def apply_modified(
    modified: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Map MODIFY's `modified_tool_args` back onto the call (wire.md's rules, in order).

    Raises ModificationError when the rewrite cannot be applied: the caller blocks the call
    rather than run it with arguments the policy did not approve.
    """
    single = len(args) + len(kwargs) == 1
    if isinstance(modified, Mapping):
        if "args" in modified or "kwargs" in modified:
            new_args = modified.get("args", list(args))
            new_kwargs = modified.get("kwargs", kwargs)
            if not isinstance(new_args, list | tuple) or not isinstance(new_kwargs, Mapping):
                raise ModificationError("modified_tool_args has 'args'/'kwargs' of the wrong type")
            return tuple(new_args), {str(k): v for k, v in new_kwargs.items()}
        if len(args) == 1 and not kwargs and isinstance(args[0], Mapping):
            return (dict(modified),), {}
        if single and ("arg0" in modified or "input" in modified):
            value = modified["arg0"] if "arg0" in modified else modified["input"]
            if args:
                return (value,), {}
            return (), {next(iter(kwargs)): value}
        if not args:
            return (), {str(k): v for k, v in modified.items()}
        raise ModificationError("modified_tool_args does not fit the call's positional arguments")
    if single:
        if args:
            return (modified,), {}
        return (), {next(iter(kwargs)): modified}
    raise ModificationError("modified_tool_args is not an object and the call has several arguments")
