"""openai-agents: real Runner loops whose model is the SDK's Responses model talking HTTP to the
loopback OpenAI stub; Thoth governs through needs_approval + tool guardrails."""

from __future__ import annotations

import asyncio

import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    function_tool,
    set_tracing_disabled,
)
from llm_stub import LLMStub
from openai import AsyncOpenAI

from thoth import ThothPolicyViolation
from thoth.integrations.openai_agents import instrument_agent, resolve_approvals, resolve_approvals_sync

set_tracing_disabled(True)  # the default exporter would try the network

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]
PAYMENTS = [("transfer_money", {"amount": "10"}), ("wire_funds", {"amount": "99"})]


def make_agent(stub: LLMStub, ran) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return ran("get_weather", city=city)

    @function_tool
    async def delete_file(path: str) -> str:
        """Delete a file."""
        return ran("delete_file", path=path)

    @function_tool
    def transfer_money(amount: str) -> str:
        """Move money."""
        return ran("transfer_money", amount=amount)

    @function_tool
    def wire_funds(amount: str) -> str:
        """Wire money abroad."""
        return ran("wire_funds", amount=amount)

    model = OpenAIResponsesModel(model="gpt-4o", openai_client=AsyncOpenAI(base_url=stub.openai_url, api_key="test",
                                                                           max_retries=0))
    return Agent(name="ops", instructions="Do what is asked.", model=model,
                 tools=[get_weather, delete_file, transfer_money, wire_funds])


def outputs_sent(stub: LLMStub) -> dict[str, str]:
    """call id -> function_call_output text of the last request, and call id -> tool name."""
    items = stub.requests[-1]["body"]["input"]
    names = {i["call_id"]: i["name"] for i in items if isinstance(i, dict) and i.get("type") == "function_call"}
    return {names[i["call_id"]]: str(i["output"]) for i in items
            if isinstance(i, dict) and i.get("type") == "function_call_output"}


@pytest.mark.parametrize("streamed", [False, True])
def test_block_is_rejected_content_and_sibling_runs(governance, tracer, ran, streamed):
    async def main() -> str:
        with LLMStub([PARALLEL]) as stub:
            agent = instrument_agent(make_agent(stub, ran), tracer)
            if streamed:
                result = Runner.run_streamed(agent, "weather, then clean up")
                async for _ in result.stream_events():
                    pass
            else:
                result = await Runner.run(agent, "weather, then clean up")
            sent = outputs_sent(stub)
        assert sent["get_weather"] == "get_weather ok"
        assert "blocked by Thoth" in sent["delete_file"] and "not allowed here" in sent["delete_file"]
        return str(result.final_output)

    assert "blocked by Thoth" in asyncio.run(main())
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    assert tracer.session.token_spend == 2 * 18  # two model turns


def test_raise_mode_trips_the_guardrail(governance, tracer, ran):
    async def main() -> None:
        with LLMStub([[("delete_file", {"path": "/etc"})]]) as stub:
            agent = instrument_agent(make_agent(stub, ran), tracer, on_block="raise")
            with pytest.raises(ToolInputGuardrailTripwireTriggered) as info:
                await Runner.run(agent, "clean up")
        violation = info.value.output.output_info
        assert isinstance(violation, ThothPolicyViolation) and violation.tool_name == "delete_file"

    asyncio.run(main())
    assert ran.names == []
    assert governance.enforce_counts() == {"delete_file": 1}


def test_step_up_interrupts_and_thoth_reviewer_decides(governance, tracer, ran):
    async def main() -> dict[str, str]:
        with LLMStub([PAYMENTS]) as stub:
            agent = instrument_agent(make_agent(stub, ran), tracer)
            result = await Runner.run(agent, "pay")
            held = sorted(item.tool_name for item in result.interruptions)
            assert held == ["transfer_money", "wire_funds"]  # the run paused; nothing ran yet
            assert ran.names == []
            state = await resolve_approvals(result)  # waits for the reviewer via the approvals API
            result = await Runner.run(agent, state)
            assert not result.interruptions
            return outputs_sent(stub)

    sent = asyncio.run(main())
    assert ran.names == ["transfer_money"]
    assert sent["transfer_money"] == "transfer_money ok"
    assert "denied by reviewer" in sent["wire_funds"]
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}
    assert governance.approval_uses("transfer_money") == [("approved", 1, 1)]  # its one use: the run


def test_the_same_approved_payment_in_a_new_run_is_held_anew(governance, tracer, ran):
    pay = [("transfer_money", {"amount": "10"})]

    async def run_once(stub: LLMStub) -> None:
        agent = instrument_agent(make_agent(stub, ran), tracer)
        result = await Runner.run(agent, "pay")
        assert [item.tool_name for item in result.interruptions] == ["transfer_money"]  # held, every time
        result = await Runner.run(agent, await resolve_approvals(result))
        assert not result.interruptions and outputs_sent(stub)["transfer_money"] == "transfer_money ok"

    async def main() -> None:
        with LLMStub([pay]) as stub:
            await run_once(stub)
        assert governance.approval_uses("transfer_money") == [("approved", 1, 1)]
        with LLMStub([pay]) as stub:  # the same call again, no token: a new hold, a new approval
            await run_once(stub)

    asyncio.run(main())
    assert ran.calls == [("transfer_money", {"amount": "10"})] * 2
    assert governance.enforce_counts() == {"transfer_money": 2}
    assert governance.approval_uses("transfer_money") == [("approved", 1, 1), ("approved", 1, 1)]


def test_sync_runner_and_app_side_approval_still_waits_for_thoth(governance, tracer, ran):
    with LLMStub([PAYMENTS]) as stub:
        agent = instrument_agent(make_agent(stub, ran), tracer)
        result = Runner.run_sync(agent, "pay")
        state = result.to_state()
        for item in result.interruptions:  # the app approves both itself...
            state.approve(item)
        result = Runner.run_sync(agent, state)
        sent = outputs_sent(stub)
    assert ran.names == ["transfer_money"]  # ...but Thoth's denial of wire_funds still holds
    assert "denied by reviewer" in sent["wire_funds"]
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}

    with LLMStub([[("transfer_money", {"amount": "3"})]]) as stub:
        agent = instrument_agent(make_agent(stub, ran), tracer)
        result = Runner.run_sync(agent, "pay again")
        result = Runner.run_sync(agent, resolve_approvals_sync(result))
    assert ran.names == ["transfer_money", "transfer_money"]
    assert governance.enforce_counts() == {"transfer_money": 2, "wire_funds": 1}


def test_thoth_instrument_detects_an_openai_agents_agent(governance, ran):
    """The seed's three lines work for openai-agents too: thoth.instrument(agent, ...)."""
    import thoth

    from ..support import instrument_settings

    async def main() -> dict[str, str]:
        with LLMStub([PARALLEL]) as stub:
            agent = make_agent(stub, ran)
            assert thoth.instrument(agent, **instrument_settings(governance)) is agent
            await Runner.run(agent, "weather, then clean up")
            return outputs_sent(stub)

    sent = asyncio.run(main())
    assert sent["get_weather"] == "get_weather ok"
    assert "blocked by Thoth" in sent["delete_file"]
    assert ran.names == ["get_weather"]


def test_the_run_input_is_the_task(governance, ran):
    """Runner.run(agent, "...") : the input is the task the tools run under."""
    import thoth

    from ..support import instrument_settings

    seen = []

    async def main() -> None:
        with LLMStub([[("get_weather", {"city": "Oslo"})]]) as stub:
            @function_tool
            def get_weather(city: str) -> str:
                """Weather for a city."""
                seen.append(thoth.get_current_session().task.text)
                return ran("get_weather", city=city)

            model = OpenAIResponsesModel(model="gpt-4o", openai_client=AsyncOpenAI(
                base_url=stub.openai_url, api_key="test", max_retries=0))
            agent = Agent(name="ops", instructions="Do what is asked.", model=model, tools=[get_weather])
            thoth.instrument(agent, **instrument_settings(governance))
            await Runner.run(agent, "what is the weather in Oslo?")

    asyncio.run(main())
    assert seen == ["what is the weather in Oslo?"]
