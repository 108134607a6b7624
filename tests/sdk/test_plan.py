"""Task plans (thoth.plan; docs/policy.md, "Task plans"): the policy's `tasks:` section, plans
from a declared intent and from patterns, GET /v1/tasks on the real server and its cached
client, the in-process catalogue, and plans that the engine then judges. The planner against the
real OpenAI/Anthropic client libraries is tested in tests/integrations/{openai,anthropic}/."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from thoth.plan import Planner, RemoteCatalog, TaskCatalog, catalog_from_policy, make_plan, normalize_text
from thoth.policy import CallContext, PolicyValidationError, compile_policy
from thoth.policy.local import LocalEnforcer

from .real_server import Tenant

POLICY = r"""
version: 1
tools:
  read_inbox: {tier: low, classification: read, description: list and read the user's mail}
  send_email: {tier: low, classification: external, description: send a mail}
  get_balance: {tier: low, classification: read, output: trusted}
  transfer: {tier: low, classification: write}
intents:
  bookkeeping: {tools: [get_balance, "tr*"]}
tasks:
  reply:
    match: ['\breply\b', '\banswer\b.*\bmail']
    tools: [read_inbox, send_email]
    args:
      send_email: {to: {source: [user, trusted]}}
  pay:
    match: '\bpay\b'
    tools: [get_balance, transfer, send_email]
    args:
      send_email: {to: {source: [user]}}
      transfer: {amount: [10, 20]}
rules:
  - {id: off-plan, when: {in_plan: false}, action: block, reason: not what the user asked for}
  - {id: no-plan, when: {plan: none, classification: [write, external]}, action: step_up}
"""


def catalog() -> TaskCatalog:
    return catalog_from_policy(compile_policy(POLICY))


def test_tasks_section_is_validated() -> None:
    bad = {"version": 1, "tasks": {
        "a": {"match": "(unclosed", "tools": ["x"]},
        "b": {"match": ["ok"]},
        "c": {"match": ["ok"], "tools": ["x"], "args": {"x": {"to": {"regex": ".*"}}}},
        "d": {"match": [], "tools": ["x"]},
        "e": {"match": "ok", "tools": ["x"], "colour": 1},
    }}
    with pytest.raises(PolicyValidationError) as exc:
        compile_policy(bad)
    text = "\n".join(str(e) for e in exc.value.errors)
    assert "tasks.a.match: bad regex" in text
    assert "tasks.b: a task needs tools" in text
    assert "tasks.c.args.x.to: expected a list of allowed values" in text
    assert "tasks.d.match: match takes a regular expression" in text
    assert "tasks.e.colour: unknown field 'colour'" in text


def test_plan_from_patterns_ignores_case_invisible_and_fullwidth_characters() -> None:
    cat = catalog()
    for text in ("Please REPLY to Bob", "please re\u200bply to bob", "please \uff52\uff45\uff50\uff4c\uff59 to bob",
                 "Answer\n\tthe last   mail"):
        plan = make_plan(text, cat)
        assert plan == {"tools": ["read_inbox", "send_email"], "source": "tasks:reply",
                        "args": {"send_email": {"to": {"source": ["user", "trusted"]}}}}, text
    assert normalize_text("A\u200b\u00adB  c") == "ab c"
    assert make_plan("what is the weather", cat) is None
    assert make_plan(None, cat) is None and make_plan("reply", None) is None


def test_matching_entries_are_joined_and_the_intent_wins() -> None:
    plan = make_plan("reply to the landlord and pay the rent", catalog())
    assert plan is not None
    assert plan["source"] == "tasks:reply,pay"
    assert plan["tools"] == ["read_inbox", "send_email", "get_balance", "transfer"]
    # send_email is constrained by both entries (source lists joined); transfer only by `pay`.
    assert plan["args"] == {"send_email": {"to": {"source": ["trusted", "user"]}}, "transfer": {"amount": [10, 20]}}
    assert make_plan("reply to Bob", catalog(), intent="bookkeeping") == {"tools": ["get_balance", "tr*"],
                                                                          "source": "intent"}
    assert make_plan("reply to Bob", catalog(), intent="undeclared")["source"] == "tasks:reply"  # type: ignore[index]


def test_a_planner_that_fails_means_no_plan() -> None:
    class Broken:
        class chat:  # noqa: N801 - the OpenAI client's shape
            class completions:  # noqa: N801
                @staticmethod
                def create(**kw: Any) -> Any:
                    raise ConnectionError("model unreachable")

    planner = Planner(Broken(), "m")
    assert make_plan("something no pattern knows", catalog(), planner=planner) is None
    assert make_plan("something no pattern knows", catalog(), planner=planner) is None
    assert planner.calls == 1  # the failure is cached too: one model request per task
    with pytest.raises(TypeError, match="OpenAI or Anthropic client"):
        Planner(object(), "m")


def test_the_engine_judges_a_computed_plan() -> None:
    policy = compile_policy(POLICY)
    cat = catalog_from_policy(policy)

    def decide(tool: str, args: dict[str, Any], text: str, sources: dict[str, Any]) -> Any:
        task = {"id": "t", "plan": make_plan(text, cat)}
        return policy.evaluate(CallContext(tool_name=tool, tool_args=args, task=task, arg_sources=sources))

    assert decide("send_email", {"to": "bob@x.example"}, "reply to bob", {"to": ["task"]}).decision == "ALLOW"
    off = decide("transfer", {"amount": 10}, "reply to bob", {"amount": ["task"]})
    assert off.decision == "BLOCK" and "transfer is not among the tools the task's plan (tasks:reply)" in off.reason
    injected = decide("send_email", {"to": "eve@x.example"}, "reply to bob", {"to": ["tool:read_inbox#1"]})
    assert injected.decision == "BLOCK" and "appeared only in the output of read_inbox (call 1)" in injected.reason
    wrong_amount = decide("transfer", {"amount": 5000}, "pay the rent", {"amount": []})
    assert wrong_amount.decision == "BLOCK" and "outside the planned values" in wrong_amount.reason
    unplanned = decide("transfer", {"amount": 5}, "what is the weather", {"amount": ["task"]})
    assert unplanned.decision == "STEP_UP" and unplanned.matched_rule_ids == ["no-plan"]


def test_in_process_catalogue_is_the_local_policy(tmp_path: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    enforcer = LocalEnforcer(policy_path=path)
    cat = catalog_from_policy(enforcer.policy)
    assert cat.catalogue["send_email"]["description"] == "send a mail"
    assert cat.catalogue["get_balance"]["output"] == "trusted"
    assert [t.name for t in cat.tasks] == ["reply", "pay"]


def test_get_tasks_on_the_real_server_and_its_cached_client(real: Tenant) -> None:
    real.put_policy(POLICY)
    assert httpx.get(real.url + "/v1/tasks", timeout=10).status_code == 401
    wrong = httpx.post(real.url + "/v1/tasks", headers={"x-api-key": real.sdk_key}, timeout=10)
    assert wrong.status_code == 405 and wrong.json()["message"] == "use GET"
    body = httpx.get(real.url + "/v1/tasks", headers={"x-api-key": real.sdk_key}, timeout=10).json()
    assert body["tasks"][0]["name"] == "reply" and body["intents"]["bookkeeping"]["tools"] == ["get_balance", "tr*"]
    assert body["catalogue"]["get_balance"]["output"] == "trusted" and isinstance(body["policy_version"], int)

    remote = RemoteCatalog(real.url, real.sdk_key, ttl=0.5)
    first = remote.get()
    assert first is not None and make_plan("reply to bob", first)["source"] == "tasks:reply"  # type: ignore[index]
    real.put_policy(POLICY.replace("reply:", "respond:"))
    assert remote.get() is first  # within the TTL: the cached catalogue
    time.sleep(0.6)
    fresh = remote.get()
    assert fresh is not None and fresh is not first and fresh.digest != first.digest
    assert make_plan("reply to bob", fresh)["source"] == "tasks:respond"  # type: ignore[index]

    # A server that cannot answer: the last good catalogue stays; none at all without one.
    dead = RemoteCatalog("http://127.0.0.1:9", real.sdk_key, ttl=0.0, timeout=0.5)
    assert dead.get() is None
    remote.url = "http://127.0.0.1:9/v1/tasks"
    remote._expires = 0.0
    assert remote.get() is fresh


def test_task_plans_for_a_tracer_in_process_and_remote(tmp_path: Any, real: Tenant) -> None:
    from thoth.instrumentor import build_tracer
    from thoth.plan import TaskPlans

    local = build_tracer(agent_id="a", tenant_id="t", api_url="local", enforcement="block")
    local.enforcer.policy = compile_policy(POLICY)
    plans = TaskPlans.for_tracer(local)
    assert plans.plan("please reply to Bob")["source"] == "tasks:reply"  # type: ignore[index]
    local.enforcer.policy = compile_policy(POLICY.replace("reply:", "respond:"))  # a hot reload
    assert plans.plan("please reply to Bob")["source"] == "tasks:respond"  # type: ignore[index]
    assert plans.plan("please reply to Bob", intent="bookkeeping")["source"] == "intent"  # type: ignore[index]

    real.put_policy(POLICY)
    remote = TaskPlans.for_tracer(real.tracer())
    assert remote.plan("pay the rent")["tools"] == ["get_balance", "transfer", "send_email"]  # type: ignore[index]
    assert remote.plan("the weather") is None
