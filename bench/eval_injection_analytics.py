"""Does the risk score tell injected calls from benign ones? AUC on AgentDojo's dev suites.

    .venv/bin/python bench/eval_injection_analytics.py [--tasks]

Every AgentDojo session (benign and attack) is replayed through the real SDK in-process
(observe mode: every call runs), and the enforce request the SDK built for each call is kept:
tool, arguments, and the `task` / `arg_sources` it computed. Then the server's analytics
(thoth.analytics.AnalyticsEngine, with thoth.analytics.provenance signals made from those
requests and the suite catalogue's trust labels, as the server does) are driven as the server
drives them:

- split (fixed, documented in docs/evaluation.md): per suite, the benign user tasks whose number
  is even train the agent's profile; the odd ones are held out;
- test: the held-out benign sessions, and the attack sessions built on held-out user tasks;
  each test session starts from the trained profile (it is not learnt into the next one), and each
  of its calls is scored before it is observed;
- positives: the injected calls of the attack sessions; negatives: every call of the held-out
  benign sessions. Reported: per-call AUC with and without the provenance signals.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src", ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from eval_injection import ReplayAgent, policy_text  # noqa: E402
from injection_data import Session, agentdojo  # noqa: E402

import thoth  # noqa: E402
from thoth.analytics import AnalyticsEngine  # noqa: E402
from thoth.analytics.provenance import provenance_signals  # noqa: E402
from thoth.instrumentor import build_tracer  # noqa: E402
from thoth.integrations.generic import instrument_agent  # noqa: E402
from thoth.policy import compile_policy  # noqa: E402
from thoth.policy.engine import CallContext  # noqa: E402

DAY = 86400.0


class Recording:
    """Wraps the tracer's enforcer: keeps every request the SDK sends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def enforce(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        return self.inner.enforce(request)


def record(sessions: list[Session], suite: str) -> dict[str, list[dict[str, Any]]]:
    """The SDK's enforce requests of each session, every call allowed to run (observe mode)."""
    out = {}
    for s in sessions:
        agent = ReplayAgent(s)
        tracer = build_tracer(agent_id=f"replay-{suite}", approved_scope=[], tenant_id="bench", api_url="local",
                              session_id=f"{s.key}/{uuid.uuid4().hex[:8]}", enforcement="observe")
        rec = Recording(tracer.enforcer)
        tracer.enforcer = rec
        instrument_agent(agent, tracer)
        with thoth.task(s.task):
            agent.run()
        out[s.key] = rec.requests
    return out


def task_number(key: str) -> int:
    return int(key.split("/")[1].rsplit("_", 1)[1])


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counting half."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def evaluate(suite: str, sessions: list[Session], requests: dict[str, list[dict[str, Any]]], trusted: frozenset[str],
             with_provenance: bool) -> tuple[list[float], list[float]]:
    engine = AnalyticsEngine()
    agent = f"replay-{suite}"
    t = 1_800_000_000.0
    train = [s for s in sessions if s.benign and task_number(s.key) % 2 == 0]
    held = {task_number(s.key) for s in sessions if s.benign and task_number(s.key) % 2 == 1}
    test = [s for s in sessions if task_number(s.key) in held]

    def signals(req: dict[str, Any]) -> Any:
        if not with_provenance:
            return None
        call = CallContext.from_request(req, now=t, client_history=False)
        return provenance_signals(call, trusted)

    for rnd in range(3):  # three passes over the training tasks: a few days of an agent's life
        for s in train:
            sid = f"train{rnd}/{s.key}"
            for req in requests[s.key]:
                score = engine.score(agent, req["tool_name"], req["tool_args"], t, session_id=sid, provenance=signals(req))
                engine.observe(agent, req["tool_name"], req["tool_args"], t, "ALLOW", session_id=sid, anomaly=score)
                t += 20.0
            t += 3600.0
    trained = engine.dump_agent(agent)
    pos: list[float] = []
    neg: list[float] = []
    for s in test:
        if trained is not None:
            engine.load_agent(agent, trained)
        sid = f"test/{s.key}"
        for i, req in enumerate(requests[s.key]):
            score = engine.score(agent, req["tool_name"], req["tool_args"], t, session_id=sid, provenance=signals(req))
            engine.observe(agent, req["tool_name"], req["tool_args"], t, "ALLOW", session_id=sid, anomaly=score)
            t += 20.0
            if s.benign:
                neg.append(score.score)
            elif s.injected_from is not None and i >= s.injected_from:
                pos.append(score.score)
        t += 600.0
    return pos, neg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", action="store_true", help="the pack's tasks: patterns plan each task (off-plan signal)")
    args = ap.parse_args()
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    by_suite: dict[str, list[Session]] = {}
    for s in agentdojo():
        by_suite.setdefault(s.suite, []).append(s)
    print(f"AUC of the risk score, injected calls vs held-out benign calls (tasks: {'on' if args.tasks else 'off'})")
    for suite, sessions in by_suite.items():
        text = policy_text(suite, ["prompt_injection"], args.tasks)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write(text)
        os.environ["THOTH_POLICY"] = fh.name
        requests = record(sessions, suite)
        os.unlink(fh.name)
        trusted = compile_policy(text).trusted
        for prov in (False, True):
            pos, neg = evaluate(suite, sessions, requests, trusted, prov)
            print(f"  {suite:<10} provenance signals {'on ' if prov else 'off'}: AUC {auc(pos, neg):.3f} "
                  f"({len(pos)} injected calls, {len(neg)} held-out benign calls)")


if __name__ == "__main__":
    main()
