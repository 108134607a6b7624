"""What every framework adapter shares: the two ways a block can surface, the text the model
reads when a call is blocked, and turning untrusted tool arguments into a policy dict.

Nothing here imports a framework.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from thoth.exceptions import ThothPolicyViolation

OnBlock = Literal["return", "raise"]
"""How a blocked call surfaces: "return" hands the model an error result and the run goes on;
"raise" stops the run the framework's own way (usually: ThothPolicyViolation propagates)."""

ON_BLOCK_VALUES = ("return", "raise")


def check_on_block(value: str) -> OnBlock:
    if value not in ON_BLOCK_VALUES:
        raise ValueError(f"on_block must be 'return' or 'raise', got {value!r}")
    return value  # type: ignore[return-value]


def block_message(exc: ThothPolicyViolation) -> str:
    """The error text a model reads instead of a tool result."""
    ref = f" (violation {exc.violation_id})" if exc.violation_id else ""
    return f"[blocked by Thoth] Tool '{exc.tool_name}' was not run: {exc.reason}{ref}"


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Model-written arguments (a JSON string or a dict) as a dict for policy and for the tool.

    Text that is not a JSON object is kept whole under "input" so policy still sees it.
    """
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    if isinstance(raw, (str, bytes, bytearray)):
        try:
            value = json.loads(raw)
        except ValueError:
            return {"input": raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")}
        return value if isinstance(value, dict) else {"input": value}
    return {"input": raw}


def call_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of a Python call in the wire's shape: one dict argument is that dict; keyword
    arguments only are the kwargs; a single positional value is {"input": value}; anything else
    is {"args": [...], "kwargs": {...}}."""
    if not args:
        return dict(kwargs)
    if len(args) == 1 and not kwargs:
        return args[0] if isinstance(args[0], dict) else {"input": args[0]}
    return {"args": list(args), "kwargs": dict(kwargs)}


def modified(original: dict[str, Any], governed_args: Any) -> dict[str, Any] | None:
    """The rewritten arguments when policy answered MODIFY, else None."""
    if governed_args is original or not isinstance(governed_args, dict) or governed_args == original:
        return None
    return governed_args
