"""Govern a CrewAI crew with Thoth: `thoth.instrument(agent)` hooks CrewAI's before/after
tool-call hooks, so every tool call of that agent is checked once before it runs.

Runs offline: the agent's LLM is CrewAI's OpenAI provider pointed at examples/llm_stub.py (a
loopback stand-in of the OpenAI API); the Thoth server is the one at THOTH_API_URL /
THOTH_API_KEY (e.g. `thoth serve`). pip install ".[crewai]" (in a clone of Thoth)
"""

from __future__ import annotations

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # keep the example offline
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import LLM, Agent, Crew, Task  # noqa: E402
from crewai.tools import tool  # noqa: E402
from llm_stub import LLMStub  # noqa: E402

import thoth  # noqa: E402
from thoth import ThothPolicyViolation  # noqa: E402


@tool("search_docs")
def search_docs(query: str) -> str:
    """Search internal documentation."""
    return f"3 documents about {query}"


@tool("delete_record")
def delete_record(record_id: str) -> str:
    """Delete a customer record."""
    return f"deleted {record_id}"


plan = [[("search_docs", {"query": "retention policy"}), ("delete_record", {"record_id": "c-42"})]]
settings = {"approved_scope": ["search_docs"], "tenant_id": os.environ.get("THOTH_TENANT_ID", "acme"),
            "user_id": "dana@acme.com"}

with LLMStub(plan) as llm_api:
    def make_crew() -> tuple[Agent, Crew]:
        llm = LLM(model="openai/gpt-4o", base_url=llm_api.openai_url, api_key="not-needed-offline")
        agent = Agent(role="Records clerk", goal="Keep records tidy", backstory="Careful with data.",
                      tools=[search_docs, delete_record], llm=llm, max_iter=3)
        task = Task(description="Find the retention policy, then delete record c-42.",
                    expected_output="what was done", agent=agent)
        return agent, Crew(agents=[agent], tasks=[task])

    # 1. Default: the model reads Thoth's block reason instead of the tool result; the run goes on.
    clerk, crew = make_crew()
    thoth.instrument(clerk, agent_id="records-clerk", enforcement="block", **settings)
    print("crew result:", crew.kickoff())

    # 2. on_block="raise": the block stops kickoff() (CrewAI's own abort type, no retries).
    clerk, crew = make_crew()
    thoth.instrument(clerk, agent_id="records-clerk", enforcement="block", on_block="raise", **settings)
    try:
        crew.kickoff()
    except ThothPolicyViolation as e:
        print(f"Blocked: {e.tool_name} - {e.reason} (violation {e.violation_id})")
thoth.flush()
