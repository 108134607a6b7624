"""Malformed documents: clear errors that name the line and the path; never a crash."""

from __future__ import annotations

import pytest

from thoth.policy import PolicyValidationError, compile_policy


def errors_of(text: str | dict) -> list:
    with pytest.raises(PolicyValidationError) as info:
        compile_policy(text)
    assert info.value.errors
    return info.value.errors


def test_errors_carry_line_numbers_and_paths() -> None:
    text = """\
version: 1
rules:
  - id: ok
    when: {tool: a}
    action: block
  - id: bad
    when:
      args:
        amount: {gt: lots}
    action: block
  - id: bad2
    when: {tool: a}
    action: explode
"""
    errs = errors_of(text)
    by_path = {e.path: e for e in errs}
    assert by_path["rules[1].when.args.amount.gt"].line == 9
    assert "number" in by_path["rules[1].when.args.amount.gt"].message
    assert by_path["rules[2].action"].line == 13
    assert "explode" in by_path["rules[2].action"].message


def test_all_problems_are_reported_at_once() -> None:
    errs = errors_of({"rules": [{"id": "a", "when": {"nope": 1}, "action": "block"},
                                {"id": "a", "when": {"tool": "x"}, "action": "block"},
                                {"when": {"tool": "x"}, "action": "block"}], "bogus": 1})
    messages = " | ".join(str(e) for e in errs)
    assert "unknown condition 'nope'" in messages
    assert "duplicate rule id 'a'" in messages
    assert "needs an id" in messages
    assert "unknown field 'bogus'" in messages


def test_yaml_syntax_errors_name_the_line() -> None:
    [err] = errors_of("version: 1\nrules:\n  - id: a\n    when: {tool: [x\n")
    assert err.line is not None and err.line >= 4
    assert "YAML" in err.message


@pytest.mark.parametrize("text", ["", "   \n", "- a\n- b\n", "42", "null", "a: 1\n---\nb: 2\n"])
def test_non_mapping_or_empty_documents(text: str) -> None:
    errors_of(text)


def test_duplicate_keys_are_refused() -> None:
    [err] = errors_of("version: 1\nname: a\nname: b\n")
    assert "duplicate key" in err.message


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    [err] = errors_of("\n".join(lines) + "\n")
    assert "values" in err.message


def test_bad_regex_glob_and_timezone() -> None:
    errs = errors_of({"rules": [
        {"id": "a", "when": {"args": {"x": {"regex": "("}}}, "action": "block"},
        {"id": "b", "when": {"time": {"between": ["25:00", "x"], "tz": "Mars/Base"}}, "action": "block"},
    ]})
    text = " | ".join(str(e) for e in errs)
    assert "bad regex" in text
    assert "unknown time zone" in text


def test_modify_needs_a_spec_and_only_with_modify() -> None:
    errs = errors_of({"rules": [{"id": "a", "when": {"tool": "x"}, "action": "modify"},
                                {"id": "b", "when": {"tool": "x"}, "action": "block", "modify": {"redact": ["y"]}}]})
    assert len(errs) == 2


def test_rego_is_refused_with_an_explanation() -> None:
    [err] = errors_of({"rego": "package x"})
    assert "Rego" in err.message and "PyPI" in err.message


def test_catalogue_agents_intents_and_ladder_are_checked() -> None:
    errs = errors_of({
        "tools": {"x": {"tier": "extreme"}, "y": {"classification": "mystery"}},
        "agents": {"bot": {"tool": ["x"]}},
        "intents": {"billing": {"tools": "x", "on_violation": "panic"}},
        "progressive": {"risk_block": 3},
        "tiers": {"high": "maybe"},
    })
    paths = {e.path for e in errs}
    assert {"tools.x.tier", "tools.y.classification", "agents.bot.tool", "intents.billing.tools",
            "intents.billing.on_violation", "progressive.risk_block", "tiers.high"} <= paths


def test_json_and_dict_sources_compile() -> None:
    assert compile_policy('{"version": 1, "rules": []}').rules == []
    assert compile_policy({"version": 1}).name == "policy"
    errs = errors_of({"version": 2})
    assert errs[0].line is None


def test_disabled_rules_are_validated_but_not_active() -> None:
    p = compile_policy({"rules": [{"id": "a", "when": {"tool": "x"}, "action": "block", "enabled": False}]})
    assert p.rule_ids == []
    errors_of({"rules": [{"id": "a", "when": {"tool": 1}, "action": "block", "enabled": False}]})


def test_unquoted_times_are_read_as_minutes() -> None:
    # YAML 1.1 reads 18:00 as the base-60 integer 1080 = minutes since midnight.
    p = compile_policy("rules:\n  - id: a\n    when: {time: {between: [18:00, 23:59]}}\n    action: block\n")
    assert p.rule_ids == ["a"]


def test_deep_nesting_is_refused_or_compiled_never_a_crash() -> None:
    [err] = errors_of("rules:\n  - id: r\n    action: block\n    when: " + "{not: " * 120 + "{tool: x}" + "}" * 120 + "\n")
    assert "nested" in err.message
    cond: dict = {"tool": "x"}
    for _ in range(150):
        cond = {"not": cond}
    assert compile_policy({"rules": [{"id": "r", "when": cond, "action": "block"}]}).rule_ids == ["r"]
