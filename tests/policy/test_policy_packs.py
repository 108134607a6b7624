"""Every starter pack validates and passes its own policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from thoth.policy import compile_policy
from thoth.policy.testing import load_tests, run_tests

PACKS = Path(__file__).resolve().parents[2] / "src" / "thoth" / "policy" / "packs"
NAMES = sorted(p.stem for p in PACKS.glob("*.yaml") if not p.name.endswith(".tests.yaml"))


def test_the_five_packs_ship() -> None:
    assert NAMES == ["destructive_actions", "exfiltration", "least_privilege", "phi_minimum_necessary", "prompt_injection"]


@pytest.mark.parametrize("name", NAMES)
def test_pack_passes_its_tests(name: str) -> None:
    policy = compile_policy((PACKS / f"{name}.yaml").read_text())
    data, marks = load_tests((PACKS / f"{name}.tests.yaml").read_text())
    results = run_tests(policy, data, marks)
    assert len(results) >= 10
    failed = [(r.name, r.failures) for r in results if not r.passed]
    assert not failed


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_of_a_pack_is_exercised_by_its_tests(name: str) -> None:
    policy = compile_policy((PACKS / f"{name}.yaml").read_text())
    tests = (PACKS / f"{name}.tests.yaml").read_text()
    untested = [rid for rid in policy.rule_ids if rid not in tests]
    assert not untested


def test_a_wrong_expectation_fails() -> None:
    policy = compile_policy((PACKS / "exfiltration.yaml").read_text())
    data, marks = load_tests({"tests": [{"name": "x", "call": {"tool": "send_email", "args": {"to": "e@evil.example"}},
                                         "expect": {"decision": "ALLOW", "matched": ["nope"]}}]})
    [result] = run_tests(policy, data, marks)
    assert not result.passed
    assert any("STEP_UP" in f for f in result.failures)
    assert any("nope" in f for f in result.failures)


def test_a_malformed_test_case_is_reported_not_raised() -> None:
    policy = compile_policy((PACKS / "exfiltration.yaml").read_text())
    data, marks = load_tests({"tests": [{"call": {"args": {}}, "expect": {"bogus": 1}}, "nonsense"]})
    results = run_tests(policy, data, marks)
    assert [r.passed for r in results] == [False, False]
    assert "tool" in results[0].failures[0]
