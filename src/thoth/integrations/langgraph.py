"""LangGraph: governed tools for `create_react_agent` / `ToolNode`, and a ToolNode-level hook
for custom graphs.

    # the seed's spelling: Tracer.wrap_tool on a LangChain tool returns a governed BaseTool
    agent = create_react_agent(llm, [tracer.wrap_tool("search_database", search_database)])

    # custom graphs: hook the ToolNode itself (one check per tool call, parallel-safe)
    node = thoth.integrations.langgraph.tool_node([search, send], tracer)

With `on_block="return"` (the ToolNode default here) a blocked call becomes an error
ToolMessage and its parallel siblings keep their results; with "raise", ThothPolicyViolation
propagates out of `graph.invoke` and the whole tool step is abandoned (LangGraph's own rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from thoth.integrations import langchain as _lc
from thoth.integrations._base import OnBlock, check_on_block

if TYPE_CHECKING:
    from thoth.tracer import Tracer

wrap_tool = _lc.wrap_tool
instrument_agent = _lc.instrument_agent


def tool_call_hooks(tracer: Tracer, *, on_block: OnBlock = "return") -> dict[str, Any]:
    """`ToolNode(tools, **tool_call_hooks(tracer))`: the sync and async interceptors."""
    check_on_block(on_block)

    def wrap_tool_call(request: Any, execute: Any) -> Any:
        return _lc.gate_tool_call(tracer, on_block, request, execute)

    async def awrap_tool_call(request: Any, execute: Any) -> Any:
        return await _lc.agate_tool_call(tracer, on_block, request, execute)

    return {"wrap_tool_call": wrap_tool_call, "awrap_tool_call": awrap_tool_call}


def tool_node(tools: Sequence[Any], tracer: Tracer, *, on_block: OnBlock = "return", **kwargs: Any) -> Any:
    """A `langgraph.prebuilt.ToolNode` whose every tool call is governed."""
    from langgraph.prebuilt import ToolNode

    return ToolNode(list(tools), **tool_call_hooks(tracer, on_block=on_block), **kwargs)
