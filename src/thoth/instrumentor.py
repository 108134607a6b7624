"""instrument() and friends: being written in issue 2."""

from __future__ import annotations

from typing import Any


def instrument(agent: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("thoth.instrument is being implemented")


def instrument_openai(tools: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    raise NotImplementedError


def instrument_anthropic(tools: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    raise NotImplementedError


def flush(timeout: float = 5.0) -> None:
    raise NotImplementedError
