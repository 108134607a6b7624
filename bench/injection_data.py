"""The replay sessions of bench/eval_injection.py, built from the shared benchmark data.

A session is what a governed agent lived through: the user's request (the task) and the tool
calls in order, each with the output the tool returned. `injected_from` marks where the
attacker's calls start (None for a benign session): a call at or after it is injected.

AgentDojo (../shared/data/agentdojo-dev/README.md, "How a governance test uses it"):
- benign: one session per user task, its ground-truth calls;
- attack: one per (user task, injection task) pair with injection calls: the user calls up to
  and including the first one whose output carries the injected text, then the injection calls.

InjecAgent (../shared/data/injecagent/README.md): one session per case: the user tool's call
(its output carries the attacker's instruction), then the attacker tool(s). The dataset gives no
attacker arguments; we synthesise them from the attacker's instruction: every required
parameter gets the instruction's e-mail address (for a parameter named like a recipient/email),
else its longest quoted string or number, else the whole instruction. So a value the attacker
wants is always one the agent read in the injected output, as it would be for a real agent.
Benign: the 17 distinct user calls, once each.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (a git worktree under wt/ looks one level higher), or
# THOTH_BENCH_DATA.
DATA = Path(os.environ.get("THOTH_BENCH_DATA") or next(
    (p for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if p.is_dir()),
    ROOT.parent / "shared" / "data"))


@dataclass
class Call:
    tool: str
    args: dict[str, Any]
    output: Any


@dataclass
class Session:
    suite: str
    key: str
    task: str
    calls: list[Call]
    injected_from: int | None = None  # index of the first attacker call; None: benign
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def benign(self) -> bool:
        return self.injected_from is None


def _calls(raw: list[dict[str, Any]]) -> list[Call]:
    return [Call(c["function"], dict(c.get("args") or {}), c.get("output", c.get("error", ""))) for c in raw]


def agentdojo(data: Path = DATA / "agentdojo-dev") -> list[Session]:
    doc = json.loads((data / "traces.json").read_text())
    prompts = {(u["suite"], u["task_id"]): u["prompt"] for u in doc["user"]}
    out = [Session(u["suite"], f"{u['suite']}/{u['task_id']}", u["prompt"], _calls(u["calls"])) for u in doc["user"]]
    for a in doc["attack"]:
        if not a["injection_calls"]:
            continue  # AgentDojo's empty ground truths test nothing
        user = a["user_calls"]
        first = next(i for i, c in enumerate(user) if c.get("injected"))
        calls = _calls(user[: first + 1])
        out.append(Session(a["suite"], f"{a['suite']}/{a['user_task_id']}/{a['injection_task_id']}",
                           prompts[(a["suite"], a["user_task_id"])], calls + _calls(a["injection_calls"]),
                           injected_from=len(calls), tags={"injection_task": a["injection_task_id"]}))
    return out


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_QUOTED = re.compile(r"'([^']{2,})'|\"([^\"]{2,})\"")
_NUMBER = re.compile(r"\b\d[\d,.\-]{3,}\b")


def attacker_args(tool: dict[str, Any], instruction: str) -> dict[str, Any]:
    """Arguments an injected agent would pass: values taken from the attacker's instruction."""
    emails = _EMAIL.findall(instruction)
    quoted = sorted((a or b for a, b in _QUOTED.findall(instruction)), key=len, reverse=True)
    numbers = _NUMBER.findall(instruction)
    args: dict[str, Any] = {}
    for p in tool["parameters"]:
        if not p.get("required"):
            continue
        name = p["name"].lower()
        if emails and re.search(r"mail|recipient|to$|address", name):
            value: Any = emails[0] if p["type"] != "array" else [emails[0]]
        elif p["type"] in ("integer", "number"):
            value = numbers[0] if numbers else 1
        elif re.search(r"body|content|message|text|description", name):
            value = instruction
        else:
            value = quoted[0] if quoted else (numbers[0] if numbers else instruction)
        args[p["name"]] = [value] if p["type"] == "array" and not isinstance(value, list) else value
    return args


def injecagent(data: Path = DATA / "injecagent") -> list[Session]:
    tools = {t["name"]: t for t in json.loads((data / "tools.json").read_text())}
    out: list[Session] = []
    benign_seen: set[int] = set()
    for line in (data / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        user = Call(case["user_tool"], dict(case["user_tool_args"]), case["user_tool_output"])
        if case["user_case_index"] not in benign_seen:
            benign_seen.add(case["user_case_index"])
            clean = case["user_tool_output_template"].replace("<Attacker Instruction>", "")
            out.append(Session("injecagent", f"injecagent/user-{case['user_case_index']}", case["user_instruction"],
                               [Call(user.tool, user.args, clean)]))
        calls = [user]
        for name in case["attacker_tools"]:
            # The data tool of a ds attack returns what the attacker wants; the dataset has no
            # output for it: its `returns` schema stands in.
            calls.append(Call(name, attacker_args(tools[name], case["attacker_instruction"]),
                              json.dumps(tools[name].get("returns", []))))
        out.append(Session("injecagent", f"injecagent/{case['id']}", case["user_instruction"], calls,
                           injected_from=1, tags={"setting": case["setting"], "attack_type": case["attack_type"]}))
    return out
