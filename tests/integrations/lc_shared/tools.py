"""The four test tools as LangChain tools, recording which bodies ran."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool

from ..support import Ran


def make_tools(ran: Ran, *, asynchronous: bool = False) -> list[Any]:
    def body(name: str, description: str, param: str) -> Any:
        def sync_fn(**kwargs: Any) -> str:
            return ran(name, **kwargs)

        async def async_fn(**kwargs: Any) -> str:
            return ran(name, **kwargs)

        from pydantic import create_model

        schema = create_model(f"{name}_args", **{param: (str, ...)})  # type: ignore[call-overload]
        if asynchronous:
            return StructuredTool.from_function(coroutine=async_fn, name=name, description=description,
                                                args_schema=schema)
        return StructuredTool.from_function(func=sync_fn, name=name, description=description, args_schema=schema)

    return [
        body("get_weather", "Weather for a city.", "city"),
        body("delete_file", "Delete a file.", "path"),
        body("transfer_money", "Move money.", "amount"),
        body("wire_funds", "Wire money abroad.", "amount"),
    ]
