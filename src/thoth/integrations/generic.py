"""Generic agents: any object with a `.tools` list.

A tool with a `.run` method gets a governed `run` (set on the instance); a plain callable in the
list is replaced by a governed callable that keeps its name and signature, so no tool in the
list runs ungoverned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tracer hands itself in: importing its module here would close a cycle
    from thoth.tracer import Tracer


def tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(tool, "__name__", None) or type(tool).__name__


def instrument_agent(agent: Any, tracer: Tracer) -> Any:
    tools = getattr(agent, "tools", None)
    if not isinstance(tools, list):
        raise TypeError(f"{type(agent).__name__} has no .tools list to govern")
    for index, tool in enumerate(tools):
        tools[index] = govern_tool(tool, tracer)
    return agent


def govern_tool(tool: Any, tracer: Tracer) -> Any:
    name = tool_name(tool)
    run = getattr(tool, "run", None)
    if callable(run) and not _is_plain_function(tool):
        governed = tracer.wrap_tool(name, run)
        try:
            tool.run = governed
        except (AttributeError, TypeError, ValueError):
            object.__setattr__(tool, "run", governed)  # frozen / validated models
        return tool
    if callable(tool):
        return tracer.wrap_tool(name, tool)
    raise TypeError(f"tool {name!r} ({type(tool).__name__}) has neither a .run method nor is callable")


def _is_plain_function(tool: Any) -> bool:
    # A function (or an already governed callable) is replaced itself, not patched.
    return hasattr(tool, "__code__") or hasattr(tool, "__thoth_original__")
