"""The condition kinds are one table joined from the families' tables: what a policy may use and
how each kind compiles. A kind registered in a family's table is usable at once."""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import fires

from thoth.policy import cond_args, cond_call, cond_mcp, cond_provenance, cond_session, cond_time, conditions
from thoth.policy.cond_base import CHECK, CODE, EVAL, Kind
from thoth.policy.loader import Path

# The families' tables, joined into conditions.KINDS (read here, not listed again by hand: a new
# kind is its family module and its tests).
FAMILIES = (conditions._STRUCTURE, cond_call.KINDS, cond_args.KINDS, cond_session.KINDS, cond_time.KINDS,
            cond_provenance.KINDS, cond_mcp.KINDS)


def test_the_table_holds_every_kind_once_with_a_known_form() -> None:
    assert sum(len(family) for family in FAMILIES) == len(conditions.KINDS)  # no kind in two families
    assert {"all", "any", "not", "expr", "tool", "args", "history", "time"} <= set(conditions.KINDS)
    assert all(kind.form in (CODE, CHECK, EVAL) for kind in conditions.KINDS.values())
    for name, kind in conditions.KINDS.items():  # every builder is a method the Compiler has
        assert getattr(conditions.Compiler, kind.build.__name__) is kind.build, name


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(Exception, match="unknown condition 'colour'.*tool"):
        fires({"colour": "red"}, "send_email")


def _gen_tool_prefix(compiler: Any, value: Any, path: Path) -> str | None:
    if not isinstance(value, str):
        compiler.err(path, "tool_prefix takes a string")
        return None
    return f"c.tool_name.startswith({compiler.const(value)})"


def test_a_kind_added_to_a_family_table_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cond_call.KINDS, "tool_prefix", Kind(CODE, _gen_tool_prefix))
    monkeypatch.setattr(conditions, "KINDS", {**conditions.KINDS, **cond_call.KINDS})
    assert fires({"tool_prefix": "send_"}, "send_email")
    assert not fires({"tool_prefix": "send_"}, "read_file")
    with pytest.raises(Exception, match="tool_prefix takes a string"):
        fires({"tool_prefix": 3}, "send_email")
