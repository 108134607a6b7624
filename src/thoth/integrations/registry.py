"""Every framework integration, in one table: what the SDK, the noxfile and the tests all read.

Adding a framework adds one row here, plus its module (`thoth/integrations/<module>.py`), its
tests (`tests/integrations/<name>/`) and its example. A row names the pyproject extra that
installs the framework, or none: then its test environment installs `test_requirements` (which
must name `dist`), and users install the framework beside the SDK as they already do. Nothing in this module imports a
framework: agents and tools are recognised by the module and name of their classes.

A module named in a row implements the adapter protocol below; `instrument_agent` is what
`thoth.instrument(agent, ...)` calls, `wrap_tool` what `Tracer.wrap_tool` calls for a
framework's own tool objects.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

# A class pattern: (module prefix, class name or None for any class of that module).
ClassPattern = tuple[str, str | None]


class Adapter(Protocol):
    """What an integration module offers (each function only where its framework needs it)."""

    def instrument_agent(self, agent: Any, tracer: Any, **options: Any) -> Any: ...


@dataclass(frozen=True)
class Integration:
    name: str  # nox session and test folder: tests/integrations/<name>/
    module: str  # thoth.integrations.<module>
    extra: str | None  # the pyproject extra a user installs: pip install '.[<extra>]'; None: no extra
    dist: str  # a distribution whose presence means the framework is installed
    agents: tuple[ClassPattern, ...] = ()  # agent classes thoth.instrument() hands to <module>
    tools: tuple[ClassPattern, ...] = ()  # tool classes Tracer.wrap_tool hands to <module>.wrap_tool
    test_requirements: tuple[str, ...] = ()  # installed beside the extra in its test environment
    examples: tuple[str, ...] = ()
    title: str = ""  # the framework's name in messages

    @property
    def label(self) -> str:
        return self.title or self.name


# Order matters for `agents`: the first row whose pattern matches an agent's class wins.
INTEGRATIONS: tuple[Integration, ...] = (
    Integration(
        "langchain", "langchain", "langchain", "langchain",
        # LangChain classic executors; LangGraph and LangChain 1.x create_agent graphs (their ToolNodes)
        agents=(("langchain_classic.agents", "AgentExecutor"), ("langchain.agents", "AgentExecutor"),
                ("langgraph", "CompiledStateGraph")),
        tools=(("langchain_core", "BaseTool"),),
        test_requirements=("langgraph>=1.0",),
        examples=("examples/langchain_example.py",), title="LangChain",
    ),
    Integration("langgraph", "langgraph", "langgraph", "langgraph", examples=("examples/langgraph_example.py",)),
    Integration("openai", "openai", "openai", "openai", examples=("examples/openai_example.py",)),
    Integration("anthropic", "anthropic", "anthropic", "anthropic", examples=("examples/anthropic_example.py",)),
    # crewai is the heavy one (~940 MB: chromadb, onnxruntime, lancedb) and pins openai<3
    Integration("crewai", "crewai", "crewai", "crewai", agents=(("crewai", None),),
                examples=("examples/crewai_example.py",)),
    Integration("openai_agents", "openai_agents", "openai-agents", "openai-agents",
                # its exact module, not any package called `agents`
                agents=(("agents.agent", "Agent"),), examples=("examples/openai_agents_example.py",)),
    # ~430 MB: the wheel bundles the Claude Code CLI, which the tests run against the Anthropic stub
    Integration("claude_agent_sdk", "claude_agent_sdk", "claude-agent-sdk", "claude-agent-sdk",
                agents=(("claude_agent_sdk", "ClaudeAgentOptions"),),
                examples=("examples/claude_agent_sdk_example.py",)),
    # autogen-core 0.7 pins protobuf 5; it and `autogen` write the same package directory
    Integration("autogen_agentchat", "autogen", "autogen-agentchat", "autogen-agentchat",
                agents=(("autogen_agentchat", None),), examples=("examples/autogen_agentchat_example.py",)),
    Integration("autogen", "autogen", "autogen", "autogen", agents=(("autogen", None),),
                examples=("examples/autogen_example.py",)),
    # The official MCP SDK: thoth.instrument(session, ..., mcp_server="name") governs a ClientSession
    Integration("mcp", "mcp", "mcp", "mcp", agents=(("mcp.client.session", "ClientSession"),
                                                    ("mcp.client.client", "Client")),
                examples=("examples/mcp_example.py",), title="MCP"),
)

BY_NAME = {integration.name: integration for integration in INTEGRATIONS}


def _matches(obj: Any, patterns: tuple[ClassPattern, ...]) -> bool:
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        for prefix, name in patterns:
            if (module == prefix or module.startswith(prefix + ".")) and name in (None, cls.__name__):
                return True
    return False


def for_agent(agent: Any) -> Integration | None:
    """The integration that governs `agent`, recognised by its classes; None for a generic agent."""
    return next((i for i in INTEGRATIONS if i.agents and _matches(agent, i.agents)), None)


def for_tool(tool: Any) -> Integration | None:
    """The integration whose framework `tool` is an object of (e.g. a LangChain BaseTool)."""
    return next((i for i in INTEGRATIONS if i.tools and _matches(tool, i.tools)), None)


def load(integration: Integration) -> Any:
    """The adapter module, with a message that says which extra to install when it cannot load."""
    try:
        return importlib.import_module(f"thoth.integrations.{integration.module}")
    except ImportError as exc:
        how = (f"the '{integration.extra}' extra: pip install '.[{integration.extra}]' in a clone of Thoth"
               if integration.extra else f"{integration.dist}: pip install {integration.dist}")
        raise RuntimeError(f"Thoth's {integration.label} integration could not be loaded (install {how}): {exc}") from exc
