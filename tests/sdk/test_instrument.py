"""thoth.instrument() and friends, used exactly as the published README shows."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import thoth
from thoth import ThothPolicyViolation
from thoth.instrumentor import detect_framework

from .wire_server import WireServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(server: WireServer, monkeypatch: pytest.MonkeyPatch) -> WireServer:
    """The README's setup: key and URL from the environment."""
    monkeypatch.setenv("THOTH_API_KEY", server.api_key)
    monkeypatch.setenv("THOTH_API_URL", server.url)
    return server



def test_out_of_scope_call_raises_with_violation_id(env: WireServer) -> None:
    class Shell:
        name = "shell"

        def run(self, cmd: str) -> str:
            raise AssertionError("must not run")

    agent = type("Agent", (), {"tools": [Shell()]})()
    thoth.instrument(agent, agent_id="a", approved_scope=["read_file"], tenant_id="acme-corp",
                     enforcement="block")
    with pytest.raises(ThothPolicyViolation) as info:
        agent.tools[0].run("rm -rf /")
    assert info.value.violation_id and info.value.tool_name == "shell"


def test_plain_functions_in_tools_are_governed(env: WireServer) -> None:
    def delete_record(record_id: int, *, hard: bool = False) -> str:
        """Delete a record."""
        return f"deleted {record_id}"

    async def lookup(key: str) -> str:
        return key

    class Agent:
        def __init__(self) -> None:
            self.tools: list[Any] = [delete_record, lookup]

    agent = thoth.instrument(Agent(), agent_id="a", approved_scope=["lookup"], tenant_id="acme-corp",
                             enforcement="block")
    governed = agent.tools[0]
    assert governed is not delete_record
    assert governed.__name__ == "delete_record" and governed.__doc__ == "Delete a record."
    assert inspect.signature(governed) == inspect.signature(delete_record)
    with pytest.raises(ThothPolicyViolation):
        governed(7)
    assert inspect.iscoroutinefunction(agent.tools[1])
    assert [r["tool_name"] for r in env.enforce_requests] == ["delete_record"]


def test_instrumenting_twice_does_not_check_twice(env: WireServer) -> None:
    class Tool:
        name = "read_file"

        def run(self, path: str) -> str:
            return path

    agent = type("Agent", (), {})()
    agent.tools = [Tool(), lambda: "x"]
    for _ in range(2):
        thoth.instrument(agent, agent_id="a", approved_scope=["read_file", "<lambda>"],
                         tenant_id="acme-corp")
    assert agent.tools[0].run("p") == "p" and agent.tools[1]() == "x"
    assert len(env.enforce_requests) == 2


def test_instrument_returns_the_same_object_and_sets_the_session(env: WireServer) -> None:
    agent = type("Agent", (), {"tools": []})()
    assert thoth.instrument(agent, agent_id="a", approved_scope=[], tenant_id="acme-corp",
                            session_id="sess-1") is agent
    session = thoth.get_current_session()
    assert session is not None and session.session_id == "sess-1"
    assert session.is_in_scope("x") is False


def test_unknown_agent_is_a_clear_type_error(env: WireServer) -> None:
    with pytest.raises(TypeError, match=r"\.tools list"):
        thoth.instrument(object(), agent_id="a", approved_scope=[], tenant_id="acme-corp")


def test_framework_objects_are_dispatched_by_module_name() -> None:
    def fake(module: str, name: str) -> Any:
        return type(name, (), {"__module__": module})()

    assert detect_framework(fake("langchain_classic.agents.agent", "AgentExecutor")) == "langchain"
    assert detect_framework(fake("crewai.agent.core", "Agent")) == "crewai"
    assert detect_framework(fake("autogen_agentchat.agents._assistant_agent", "AssistantAgent")) == "autogen"
    assert detect_framework(fake("autogen.agentchat.conversable_agent", "ConversableAgent")) == "autogen"
    assert detect_framework(fake("langchain_classic.chains", "LLMChain")) is None
    assert detect_framework(fake("myapp.agents", "AgentExecutor")) is None
    assert "crewai" not in sys.modules  # detection never imports a framework


def test_openai_and_anthropic_dicts(env: WireServer) -> None:
    def search_docs(query: str) -> str:
        return f"docs about {query}"

    def send_email(to: str, subject: str, body: str) -> str:
        return "sent"

    for instrument in (thoth.instrument_openai, thoth.instrument_anthropic):
        governed = instrument({"search_docs": search_docs, "send_email": send_email},
                              agent_id="llm-agent", approved_scope=["search_docs"],
                              tenant_id="acme-corp", enforcement="block")
        assert governed["search_docs"]({"query": "access control"}) == "docs about access control"
        assert governed["search_docs"]('{"query": "json text"}') == "docs about json text"
        with pytest.raises(ThothPolicyViolation) as info:
            governed["send_email"]({"to": "a@b", "subject": "s", "body": "b"})
        assert info.value.reason
    args = [r["tool_args"] for r in env.enforce_requests if r["tool_name"] == "send_email"]
    assert args[0] == {"to": "a@b", "subject": "s", "body": "b"}


async def test_openai_dict_with_async_tools(env: WireServer) -> None:
    async def search_docs(query: str) -> str:
        return query.upper()

    governed = thoth.instrument_openai({"search_docs": search_docs}, agent_id="a",
                                       approved_scope=["search_docs"], tenant_id="acme-corp")
    assert await governed["search_docs"]({"query": "abc"}) == "ABC"



def test_exit_drains_the_queue(env: WireServer) -> None:
    script = (
        "import thoth\n"
        "agent = type('A', (), {})()\n"
        "agent.tools = [lambda q: q]\n"
        "thoth.instrument(agent, agent_id='a', approved_scope=['<lambda>'], tenant_id='acme-corp')\n"
        "for i in range(25): agent.tools[0](i)\n"  # no flush(): the exit hook must send them
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", script], env=environment, timeout=60, check=True)
    assert len(env.events) == 50
