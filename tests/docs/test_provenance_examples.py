"""The YAML examples of docs/policy.md's "Provenance and task conditions" and "Task plans"
sections are valid policies, and the documented example decision holds."""

from __future__ import annotations

import re
from pathlib import Path

from thoth.policy import CallContext, compile_policy

POLICY_MD = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def section_blocks() -> list[str]:
    text = POLICY_MD.read_text()
    start = text.index("## Provenance and task conditions")
    end = text.index("## Precedence", start)
    return re.findall(r"```yaml\n(.*?)```", text[start:end], re.S)


def test_the_examples_compile_and_decide_as_documented() -> None:
    blocks = section_blocks()
    assert len(blocks) == 2
    pack, tasks = (compile_policy(b) for b in blocks)
    d = pack.evaluate(CallContext(tool_name="send_email", tool_args={"to": "x@evil.example"},
                                  arg_sources={"to": ["tool:read_inbox#3"]}, task={"id": "t-1", "plan": None}))
    assert d.decision == "BLOCK"
    assert d.reason == ("a recipient named only by content the agent read: to 'x@evil.example' appeared only in "
                        "the output of read_inbox (call 3), untrusted")
    assert [t["name"] for t in tasks.tasks] == ["reply", "pay"]
