"""`thoth policy ...` run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = "version: 1\nname: demo\nrules:\n  - id: no-shell\n    when: {tool: run_shell}\n    action: block\n"
BAD = "version: 1\nrules:\n  - id: a\n    when:\n      args: {n: {gt: many}}\n    action: block\n"


def thoth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thoth", "policy", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "good.tests.yaml").write_text(
        "policy: good.yaml\ntests:\n  - name: shell blocks\n    call: {tool: run_shell}\n    expect: {decision: BLOCK}\n")
    return tmp_path


def test_validate(files: Path) -> None:
    ok = thoth("validate", str(files / "good.yaml"))
    assert ok.returncode == 0 and "valid (demo: 1 rules" in ok.stdout
    bad = thoth("validate", str(files / "bad.yaml"))
    assert bad.returncode == 1
    assert f"{files / 'bad.yaml'}:5: rules[0].when.args.n.gt: gt takes a number" in bad.stdout
    js = json.loads(thoth("validate", "--json", str(files / "bad.yaml")).stdout)
    assert js["valid"] is False and js["errors"][0]["line"] == 5
    missing = thoth("validate", str(files / "nope.yaml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_test_command_with_a_tests_file_or_a_policy(files: Path) -> None:
    for target in ("good.tests.yaml", "good.yaml"):
        out = thoth("test", str(files / target))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "PASS  shell blocks" in out.stdout and "1 passed, 0 failed" in out.stdout
    (files / "good.tests.yaml").write_text(
        "policy: good.yaml\ntests:\n  - name: wrong\n    call: {tool: run_shell}\n    expect: {decision: ALLOW}\n")
    failed = thoth("test", str(files / "good.yaml"))
    assert failed.returncode == 1 and "FAIL  wrong" in failed.stdout and "decision BLOCK, expected ALLOW" in failed.stdout


def test_test_command_runs_a_shipped_pack() -> None:
    out = thoth("test", "pack:exfiltration")
    assert out.returncode == 0 and "0 failed" in out.stdout


def test_explain(files: Path) -> None:
    out = thoth("explain", "pack:exfiltration", "--tool", "send_email", "--args", '{"to": "x@evil.example"}',
                "--session", "read_file,get_secret")
    assert out.returncode == 0, out.stderr
    assert "decision:  BLOCK" in out.stdout and "ex-send-after-secret" in out.stdout and "steps:" in out.stdout
    js = json.loads(thoth("explain", str(files / "good.yaml"), "--tool", "run_shell", "--mode", "observe",
                          "--json").stdout)
    assert js["decision"] == "ALLOW" and js["would_decision"] == "BLOCK" and js["trace"]
    bad = thoth("explain", str(files / "good.yaml"), "--tool", "x", "--args", "{nope")
    assert bad.returncode == 2 and "not JSON" in bad.stderr


def test_packs_listing() -> None:
    out = thoth("packs")
    assert "pack:least_privilege" in out.stdout and "pack:phi_minimum_necessary" in out.stdout
    assert "version: 1" in thoth("packs", "destructive_actions").stdout


def test_simulate_a_local_event_file(files: Path) -> None:
    events = [
        {"event_type": "TOOL_CALL_PRE", "tool_name": "run_shell", "session_id": "s", "agent_id": "a",
         "metadata": {"tool_call": {"name": "run_shell", "arguments": {"cmd": "ls"}}}},
        {"event_type": "TOOL_CALL_POST", "tool_name": "run_shell", "session_id": "s"},
        {"event_type": "TOOL_CALL_PRE", "tool_name": "read_file", "session_id": "s", "agent_id": "a"},
    ]
    log = files / "events.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\nnot json\n")
    out = thoth("simulate", str(files / "good.yaml"), "--events", str(log), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["decisions"] == {"BLOCK": 1, "ALLOW": 1}


def test_push_and_simulate_need_a_server(files: Path) -> None:
    out = thoth("push", str(files / "good.yaml"), env={"THOTH_API_URL": "", "THOTH_API_KEY": ""})
    assert out.returncode == 2 and "THOTH_API_URL" in out.stderr
    # an invalid policy is never uploaded
    bad = thoth("push", str(files / "bad.yaml"), env={"THOTH_API_URL": "http://127.0.0.1:9", "THOTH_API_KEY": "k"})
    assert bad.returncode == 1 and "gt takes a number" in bad.stderr
    down = thoth("push", str(files / "good.yaml"), env={"THOTH_API_URL": "http://127.0.0.1:9", "THOTH_API_KEY": "k"})
    assert down.returncode == 2 and "cannot reach" in down.stderr
