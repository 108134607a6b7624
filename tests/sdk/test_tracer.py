"""Tracer.govern / run / wrap_tool against the wire server: every decision type."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from thoth import ThothPolicyViolation
from thoth.models import DecisionType

from .wire_server import WireServer, delivered


def read_file(path: str, encoding: str = "utf-8") -> str:
    """Read a file."""
    return f"contents of {path} ({encoding})"


def test_allow_runs_tool_and_emits_pre_and_post(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    governed = tracer.wrap_tool("read_file", read_file)
    assert governed("/tmp/a") == "contents of /tmp/a (utf-8)"
    assert governed.__name__ == "read_file"
    assert str(inspect.signature(governed)) == str(inspect.signature(read_file))

    (request,) = server.enforce_requests
    assert request["tool_name"] == "read_file"
    assert request["tool_args"] == {"args": ["/tmp/a"], "kwargs": {}}
    assert request["session_tool_calls"] == ["read_file"]
    assert request["enforcement_mode"] == "block"
    assert request["enforcement_trace_id"] == request["session_id"] == tracer.session.session_id
    events = delivered(server)
    kinds = sorted(e["event_type"] for e in events.values())
    assert kinds == ["TOOL_CALL_POST", "TOOL_CALL_PRE"]
    post = server.events_of("TOOL_CALL_POST")[0]
    assert post["metadata"]["result_type"] == "str"
    assert post["metadata"]["result_size_bytes"] == len("contents of /tmp/a (utf-8)")
    assert post["metadata"]["duration_ms"] >= 0
    assert post["metadata"]["sdk_language"] == "python"
    assert post["event_id"].startswith("acme-corp:")
    assert tracer.session.tool_calls == ["read_file"]


def test_block_raises_before_the_tool_runs(server: WireServer, make_tracer: Any) -> None:
    ran: list[str] = []
    tracer = make_tracer()
    delete = tracer.wrap_tool("delete_all", lambda: ran.append("ran"))
    with pytest.raises(ThothPolicyViolation) as info:
        delete()
    assert ran == []
    exc = info.value
    assert exc.tool_name == "delete_all"
    assert "outside the approved scope" in exc.reason
    assert exc.violation_id and exc.violation_id.startswith("vio_")
    assert exc.decision == "BLOCK" and exc.decision_reason_code == "policy_scope_violation"
    (block,) = [e for e in delivered(server).values() if e["event_type"] == "TOOL_CALL_BLOCK"]
    assert block["violation_id"] == exc.violation_id
    assert block["metadata"]["decision"] == "BLOCK"
    assert not server.events_of("TOOL_CALL_POST")


def test_session_tool_calls_lists_completed_calls(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    search = tracer.wrap_tool("search", lambda q: q)
    read = tracer.wrap_tool("read_file", read_file)
    search("a")
    read("b")
    read("c")
    assert [r["session_tool_calls"] for r in server.enforce_requests] == [
        ["search"], ["search", "read_file"],
        ["search", "read_file"],  # wire.md: the current call is not appended when already last
    ]


def test_tool_args_mapping_on_the_wire(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    tool = tracer.wrap_tool("search", lambda *a, **k: "ok")
    tool({"query": "x", "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}}})
    tool(query="x", limit=3)
    tool("x", 3, flag=True)
    tool(object())
    first, kw_only, mixed, odd = (r["tool_args"] for r in server.enforce_requests)
    assert first["query"] == "x"
    assert first["deep"]["a"]["b"]["c"]["d"] == "<truncated: nested deeper than 5 levels>"
    assert kw_only == {"query": "x", "limit": 3}
    assert mixed == {"args": ["x", 3], "kwargs": {"flag": True}}
    assert odd["args"][0].startswith("<object object")


@pytest.mark.parametrize(
    ("call", "modified", "expected"),
    [
        (lambda t: t({"path": "/etc/passwd"}), {"path": "/tmp/safe"}, "{'path': '/tmp/safe'}"),
        (lambda t: t("/etc/passwd"), {"arg0": "/tmp/safe"}, "('/tmp/safe',) {}"),
        (lambda t: t("/etc/passwd"), {"input": "/tmp/safe"}, "('/tmp/safe',) {}"),
        (lambda t: t(path="/etc/passwd", mode="r"), {"path": "/tmp/safe"}, "() {'path': '/tmp/safe'}"),
        (lambda t: t("a", "b", x=1), {"args": ["c"], "kwargs": {"y": 2}}, "('c',) {'y': 2}"),
    ],
)
def test_modify_maps_arguments_back(server: WireServer, make_tracer: Any, call: Any, modified: Any,
                                    expected: str) -> None:
    server.script("read_file", {"decision": "MODIFY", "modified_tool_args": modified,
                                "modification_reason": "redacted"})
    tracer = make_tracer()

    def tool(*args: Any, **kwargs: Any) -> str:
        if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
            return repr(args[0])
        return f"{args!r} {kwargs!r}"

    assert call(tracer.wrap_tool("read_file", tool)) == expected
    post = server.events_of("TOOL_CALL_POST") or [e for e in delivered(server).values()
                                                  if e["event_type"] == "TOOL_CALL_POST"]
    assert post[0]["metadata"]["decision"] == "MODIFY"


def test_modify_that_does_not_fit_blocks(server: WireServer, make_tracer: Any) -> None:
    server.script("read_file", {"decision": "MODIFY", "modified_tool_args": {"zzz": 1}})
    ran: list[Any] = []
    tool = make_tracer().wrap_tool("read_file", lambda a, b: ran.append((a, b)))
    with pytest.raises(ThothPolicyViolation, match="policy modified the arguments"):
        tool(1, 2)
    assert ran == []


def test_defer_raises_with_defer_reason(server: WireServer, make_tracer: Any) -> None:
    server.script("search", {"decision": "DEFER", "defer_reason": "outside business hours",
                             "defer_timeout_seconds": 60})
    tool = make_tracer().wrap_tool("search", lambda q: q)
    with pytest.raises(ThothPolicyViolation) as info:
        tool("q")
    assert info.value.reason == "outside business hours"
    assert info.value.decision == "DEFER"


@pytest.mark.parametrize("verdict", ["DENY", "nonsense", None])
def test_aliases_and_unknown_verdicts(server: WireServer, make_tracer: Any, verdict: Any) -> None:
    server.script("search", lambda req: {"decision": verdict, "authorization_decision": verdict})
    with pytest.raises(ThothPolicyViolation):
        make_tracer().wrap_tool("search", lambda q: q)("x")


def test_govern_dedups_a_repeated_call_id(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    first = tracer.govern("search", {"q": "x"}, call_id="call-1")
    first.done("r")
    again = tracer.govern("search", {"q": "x"}, call_id="call-1")
    assert again.decision.decision is DecisionType.ALLOW
    assert again.tool_args == {"q": "x"}
    assert len(server.enforce_requests) == 1
    tracer.govern("search", {"q": "x"}, call_id="call-2")
    assert len(server.enforce_requests) == 2


def test_repeated_call_id_of_a_blocked_call_still_raises(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    for _ in range(2):
        with pytest.raises(ThothPolicyViolation):
            tracer.govern("rm_rf", {}, call_id="c")
    assert len(server.enforce_requests) == 1


def test_tool_error_is_recorded_and_reraised(server: WireServer, make_tracer: Any) -> None:
    def broken(q: str) -> str:
        raise KeyError(q)

    with pytest.raises(KeyError):
        make_tracer().wrap_tool("search", broken)("x")
    (post,) = [e for e in delivered(server).values() if e["event_type"] == "TOOL_CALL_POST"]
    assert post["metadata"]["error"] is True and post["metadata"]["error_type"] == "KeyError"


def test_record_llm_usage(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer()
    tracer.record_llm_usage(model="gpt-x", input_tokens=10, output_tokens=5, provider="openai")
    tracer.record_llm_usage(model="gpt-x", input_tokens=1, output_tokens=1)
    assert tracer.session.token_spend == 17
    llm = [e for e in delivered(server).values() if e["event_type"] == "LLM_INVOCATION"]
    assert len(llm) == 2
    assert {e["source_type"] for e in llm} == {"agent_llm_invocation"}


def test_tracer_with_seed_constructor(server: WireServer) -> None:
    from thoth.emitter import HttpEmitter
    from thoth.enforcer_client import EnforcerClient
    from thoth.models import EnforcementMode, ThothConfig
    from thoth.session import SessionContext
    from thoth.step_up import StepUpClient
    from thoth.tracer import Tracer

    config = ThothConfig(agent_id="langgraph-analyst", approved_scope=["search_database"],
                         tenant_id=server.tenant_id, enforcement=EnforcementMode.BLOCK,
                         api_key=server.api_key, api_url=server.url)
    session = SessionContext(config)
    tracer = Tracer(config=config, session=session,
                    emitter=HttpEmitter(api_url=config.resolved_api_url, api_key=server.api_key),
                    enforcer=EnforcerClient(config), step_up=StepUpClient(config))
    assert tracer.wrap_tool("search_database", lambda query: f"hits for {query}")("q4") == "hits for q4"
    with pytest.raises(ThothPolicyViolation):
        tracer.wrap_tool("send_slack_message", lambda channel, message: None)("#a", "b")


def test_langchain_tools_are_handed_to_the_langchain_integration(server: WireServer,
                                                                 make_tracer: Any) -> None:
    # Duck-typed: a class called BaseTool from a langchain module; langchain itself is not needed.
    base = type("BaseTool", (), {"__module__": "langchain_core.tools.base"})
    tool = type("SearchTool", (base,), {"name": "search"})()
    try:
        import thoth.integrations.langchain  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="LangChain tool"):
            make_tracer().wrap_tool("search", tool)
    else:  # the adapters' module is present: it receives the tool
        pytest.skip("thoth.integrations.langchain is installed; covered by the adapter tests")


def test_local_mode_without_the_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from thoth.instrumentor import build_tracer

    try:
        import thoth.policy.local  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="policy engine"):
            build_tracer(agent_id="a", approved_scope=[], tenant_id="t", api_url="local")
    else:
        pytest.skip("the policy engine is present; covered by its own tests")


def test_reused_call_id_with_another_tool_or_arguments_is_checked_again(
        server: WireServer, make_tracer: Any) -> None:
    """Frameworks re-run a node with the same call id; a *different* call under a reused id
    must not borrow the first call's decision."""
    tracer = make_tracer(approved_scope=["read_file"])
    tracer.govern("read_file", {"path": "/a"}, call_id="c1").done("ok")
    tracer.govern("read_file", {"path": "/a"}, call_id="c1").done("ok")  # a re-run: cached
    assert len(server.enforce_requests) == 1
    tracer.govern("read_file", {"path": "/b"}, call_id="c1").done("ok")  # other arguments
    assert len(server.enforce_requests) == 2
    with pytest.raises(ThothPolicyViolation):
        tracer.govern("delete_file", {"path": "/a"}, call_id="c1")  # other tool, out of scope
    assert len(server.enforce_requests) == 3
