"""CrewAI 1.x: real Crew/Agent loops whose LLM is CrewAI's own OpenAI provider talking HTTP to
the loopback OpenAI stub (native function calling, parallel calls), governed by thoth.instrument.
"""

from __future__ import annotations

import asyncio
import os
import time

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

import pytest  # noqa: E402
from crewai import LLM, Agent, Crew, Task  # noqa: E402
from crewai.hooks import HookAborted  # noqa: E402
from crewai.tools import tool  # noqa: E402
from llm_stub import LLMStub  # noqa: E402

import thoth  # noqa: E402
from thoth import ThothPolicyViolation  # noqa: E402

from ..support import instrument_settings  # noqa: E402

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]


def make_tools(ran):
    @tool("get_weather")
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return ran("get_weather", city=city)

    @tool("delete_file")
    def delete_file(path: str) -> str:
        """Delete a file."""
        return ran("delete_file", path=path)

    @tool("transfer_money")
    def transfer_money(amount: str) -> str:
        """Move money."""
        return ran("transfer_money", amount=amount)

    @tool("wire_funds")
    def wire_funds(amount: str) -> str:
        """Wire money abroad."""
        return ran("wire_funds", amount=amount)

    return [get_weather, delete_file, transfer_money, wire_funds]


def crew_for(stub: LLMStub, ran, role: str = "Operator") -> tuple[Agent, Crew]:
    llm = LLM(model="openai/gpt-4o", base_url=stub.openai_url, api_key="test", max_retries=0)
    agent = Agent(role=role, goal="Do the task", backstory="A careful operator.", tools=make_tools(ran),
                  llm=llm, max_iter=4, verbose=False)
    task = Task(description="Check the weather, then do what is asked.", expected_output="a summary", agent=agent)
    return agent, Crew(agents=[agent], tasks=[task], verbose=False)


def tool_messages(stub: LLMStub) -> dict[str, str]:
    messages = stub.requests[-1]["body"]["messages"]
    return {m["name"]: m["content"] for m in messages if m.get("role") == "tool"}


def wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_instrumented_agent_blocks_in_a_real_crew_run(governance, ran):
    with LLMStub([PARALLEL]) as stub:
        agent, crew = crew_for(stub, ran)
        assert thoth.instrument(agent, **instrument_settings(governance)) is agent
        result = crew.kickoff()
        sent = tool_messages(stub)
    assert ran.names == ["get_weather"]  # the blocked body never ran
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}  # one check each, no retries
    assert sent["get_weather"] == "get_weather ok"  # the parallel sibling kept its result
    assert "blocked by Thoth" in sent["delete_file"] and "not allowed here" in sent["delete_file"]
    assert "blocked by Thoth" in str(result)


def test_raise_mode_stops_kickoff_once_without_retries(governance, ran):
    with LLMStub([[("delete_file", {"path": "/etc"})], [("get_weather", {"city": "Oslo"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        thoth.instrument(agent, **instrument_settings(governance, on_block="raise"))
        with pytest.raises(ThothPolicyViolation) as info:
            crew.kickoff()
        model_calls = len(stub.requests)
    assert isinstance(info.value, HookAborted)  # CrewAI's own abort type: it passes its retry loop
    assert info.value.tool_name == "delete_file"
    assert model_calls == 1  # the run stopped at the block: no retry, no second turn
    assert ran.names == []
    assert governance.enforce_counts() == {"delete_file": 1}


def test_step_up_approve_and_deny_on_a_crew(governance, ran):
    with LLMStub([[("transfer_money", {"amount": "10"}), ("wire_funds", {"amount": "99"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        thoth.instrument(crew, **instrument_settings(governance))  # a Crew: all of its agents
        crew.kickoff()
        sent = tool_messages(stub)
    assert ran.names == ["transfer_money"]
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}
    assert sent["transfer_money"] == "transfer_money ok"
    assert "denied by reviewer" in sent["wire_funds"]


def test_async_kickoff_and_uninstrumented_agents_untouched(governance, ran):
    with LLMStub([PARALLEL]) as stub:
        agent, crew = crew_for(stub, ran)
        thoth.instrument(agent, **instrument_settings(governance))
        asyncio.run(crew.kickoff_async())
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    other = type(ran)()
    with LLMStub([PARALLEL]) as stub:
        _, plain = crew_for(stub, other, role="Ungoverned")
        plain.kickoff()
    assert other.names == ["delete_file", "get_weather"]  # not instrumented: not governed
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}


def test_unreachable_server_blocks_with_fail_closed(governance, ran):
    with LLMStub([[("get_weather", {"city": "Rome"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        # Nothing listens on port 9; with fail_closed the SDK answers BLOCK.
        thoth.instrument(agent, **instrument_settings(governance, api_url="http://127.0.0.1:9", fail_closed=True))
        crew.kickoff()
        sent = tool_messages(stub)
    assert ran.names == []
    assert "blocked by Thoth" in sent["get_weather"]


class BrokenTracer:
    """A tracer whose check fails with an unexpected error (not a policy decision)."""

    def govern(self, tool_name, tool_args=None, *, call_id=None):
        raise RuntimeError("enforcer client bug")


def test_hook_fails_closed_on_its_own_errors(ran):
    from thoth.integrations.crewai import instrument_agent

    with LLMStub([[("get_weather", {"city": "Rome"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        instrument_agent(agent, BrokenTracer())  # type: ignore[arg-type]
        crew.kickoff()
        sent = tool_messages(stub)
    assert ran.names == []  # CrewAI runs the tool when a hook raises anything but HookAborted
    assert "blocked" in sent["get_weather"]


def test_token_usage_recorded(governance, ran):
    from thoth.integrations import crewai as adapter

    with LLMStub([[("get_weather", {"city": "Rome"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        thoth.instrument(agent, **instrument_settings(governance))
        tracer = adapter._agents[str(agent.id)][0]
        crew.kickoff()
    assert wait_for(lambda: tracer.session.token_spend == 2 * 18)  # two model turns, 11 + 7 each


def test_the_crew_tasks_description_is_the_sessions_task(governance, ran):
    with LLMStub([[("get_weather", {"city": "Oslo"})]]) as stub:
        agent, crew = crew_for(stub, ran)
        thoth.instrument(agent, **instrument_settings(governance))
        session = thoth.get_current_session()
        crew.kickoff()
    assert ran.names == ["get_weather"]
    assert session.task is not None and session.task.text == "Check the weather, then do what is asked."
