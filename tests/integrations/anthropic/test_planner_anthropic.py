"""The task planner (thoth.plan.Planner) with the real Anthropic client against the loopback stub of
its API: a valid plan, a cached one, and every failure meaning "no plan"."""

from __future__ import annotations

import json

import anthropic
from llm_stub import LLMStub

from thoth.plan import Planner, TaskCatalog, make_plan

CATALOG = TaskCatalog.from_export({
    "catalogue": {"read_inbox": {"classification": "read", "description": "read the user's mail"},
                  "send_email": {"classification": "external", "description": "send a mail"}},
    "intents": {}, "tasks": [], "digest": "d1"})
GOOD = json.dumps({"tools": ["send_email"], "args": {"send_email": {"to": ["bob@corp.example"]}}})


def client(stub: LLMStub) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stub.url, api_key="test", max_retries=0)


def test_anthropic_planner_writes_a_validated_plan_once_per_task() -> None:
    with LLMStub([], final_text=GOOD) as stub:
        planner = Planner(client(stub), "claude-test")
        plan = make_plan("Send Bob (bob@corp.example) the agenda", CATALOG, planner=planner)
        assert plan == {"tools": ["send_email"], "args": {"send_email": {"to": ["bob@corp.example"]}},
                        "source": "planner"}
        assert make_plan("send bob (bob@corp.example) the agenda", CATALOG, planner=planner) == plan  # cached
        assert len(stub.requests) == 1 and planner.calls == 1
        body = stub.requests[0]["body"]
        assert stub.requests[0]["path"] == "/v1/messages" and body["model"] == "claude-test"
        assert "one JSON object" in body["system"]
        prompt = body["messages"][0]["content"]
        assert "- send_email (external): send a mail" in prompt and "the agenda" in prompt
        # Another catalogue is another cache entry.
        other = TaskCatalog(CATALOG.catalogue, {}, [], "d2")
        assert make_plan("Send Bob (bob@corp.example) the agenda", other, planner=planner) == plan
        assert planner.calls == 2


def test_anthropic_planner_failures_are_no_plan() -> None:
    answers = ["I think you should use send_email", json.dumps({"tools": ["wire_money"]}),
               json.dumps({"tools": ["send_email"], "args": {"send_email": {"to": {"regex": ".*"}}}}),
               json.dumps({"tools": ["send_email"], "extra": 1}), "```json\n" + GOOD + "\n```"]
    got = []
    for answer in answers:
        with LLMStub([], final_text=answer) as stub:
            got.append(make_plan("mail bob", CATALOG, planner=Planner(client(stub), "claude-test")))
    assert got[:4] == [None, None, None, None]
    assert got[4] is not None and got[4]["tools"] == ["send_email"]  # a fenced JSON answer is read
    with LLMStub([], final_text=GOOD) as stub:
        url = stub.url
    unreachable = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
    assert make_plan("mail bob", CATALOG, planner=Planner(unreachable, "claude-test", timeout=2)) is None
