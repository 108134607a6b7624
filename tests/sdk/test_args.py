"""tool_args on the wire and MODIFY mapping: property tests on untrusted input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thoth.args import MAX_DEPTH, ModificationError, apply_modified, json_safe, to_wire_args

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text() | st.integers(), inner) | st.tuples(inner),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(st.lists(anything, max_size=3), st.dictionaries(st.text(), anything, max_size=3))
def test_wire_args_are_json_and_shallow(args: list[Any], kwargs: dict[str, Any]) -> None:
    wire = to_wire_args(tuple(args), kwargs)
    json.dumps(wire, allow_nan=False)
    assert isinstance(wire, dict)
    assert _depth(wire) <= MAX_DEPTH + 1  # the {"args": ...} envelope adds one level


def test_cycles_and_odd_objects() -> None:
    loop: list[Any] = []
    loop.append(loop)
    safe = json_safe({"loop": loop, "set": {3, 1}, "obj": object(), "nan": float("nan")})
    json.dumps(safe, allow_nan=False)
    assert safe["set"] == [1, 3] and safe["nan"] == "nan"


@pytest.mark.parametrize(
    ("modified", "args", "kwargs"),
    [({"x": 1}, (1, 2), {}), ([1], (1, 2), {}), ({"args": "nope"}, (1,), {})],
)
def test_unmappable_modifications_raise(modified: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ModificationError):
        apply_modified(modified, args, kwargs)
