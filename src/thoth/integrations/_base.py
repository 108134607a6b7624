"""What every framework adapter shares: the two ways a block can surface, the text the model
reads when a call is blocked, and turning untrusted tool arguments into a policy dict.

Nothing here imports a framework.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Literal

from thoth.exceptions import ThothPolicyViolation
from thoth.user_task import user_text

log = logging.getLogger("thoth")

OnBlock = Literal["return", "raise"]
"""How a blocked call surfaces: "return" hands the model an error result and the run goes on;
"raise" stops the run the framework's own way (usually: ThothPolicyViolation propagates)."""

ON_BLOCK_VALUES = ("return", "raise")


def check_on_block(value: str) -> OnBlock:
    if value not in ON_BLOCK_VALUES:
        raise ValueError(f"on_block must be 'return' or 'raise', got {value!r}")
    return value  # type: ignore[return-value]


def block_message(exc: ThothPolicyViolation) -> str:
    """The error text a model reads instead of a tool result."""
    ref = f" (violation {exc.violation_id})" if exc.violation_id else ""
    return f"[blocked by Thoth] Tool '{exc.tool_name}' was not run: {exc.reason}{ref}"


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Model-written arguments (a JSON string or a dict) as a dict for policy and for the tool.

    Text that is not a JSON object is kept whole under "input" so policy still sees it.
    """
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    if isinstance(raw, (str, bytes, bytearray)):
        try:
            value = json.loads(raw)
        except ValueError:
            return {"input": raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")}
        return value if isinstance(value, dict) else {"input": value}
    return {"input": raw}


def call_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of a Python call in the wire's shape: one dict argument is that dict; keyword
    arguments only are the kwargs; a single positional value is {"input": value}; anything else
    is {"args": [...], "kwargs": {...}}."""
    if not args:
        return dict(kwargs)
    if len(args) == 1 and not kwargs:
        return args[0] if isinstance(args[0], dict) else {"input": args[0]}
    return {"args": list(args), "kwargs": dict(kwargs)}


def modified(original: dict[str, Any], governed_args: Any) -> dict[str, Any] | None:
    """The rewritten arguments when policy answered MODIFY, else None."""
    if governed_args is original or not isinstance(governed_args, dict) or governed_args == original:
        return None
    return governed_args


class GovernedTools(dict[str, Any]):
    """Tool functions for a hand-written tool-calling loop, each call checked once.

    `tools[name](arguments, call_id=...)` takes the model's arguments (a dict or JSON text),
    governs the call, then runs `fn(**arguments)`. A block raises ThothPolicyViolation
    (on_block="raise", the seed's behaviour) or returns the block text for the model
    (on_block="return"). Framework-specific subclasses add the loop's message formats.
    """

    def __init__(self, tools: dict[str, Any], tracer: Any, *, on_block: OnBlock = "raise") -> None:
        if not isinstance(tools, dict):
            raise TypeError("expected a dict of tool name -> function")
        self.tracer = tracer
        self.on_block = check_on_block(on_block)
        self.functions = dict(tools)
        super().__init__({name: self._bind(name) for name in tools})

    def _bind(self, name: str) -> Any:
        fn = self.functions[name]
        if _is_coroutine(fn):
            async def acall(arguments: Any = None, /, *, call_id: str | None = None) -> Any:
                return await self.acall(name, arguments, call_id=call_id)

            acall.__name__ = getattr(fn, "__name__", name)
            return acall

        def call(arguments: Any = None, /, *, call_id: str | None = None) -> Any:
            return self.call(name, arguments, call_id=call_id)

        call.__name__ = getattr(fn, "__name__", name)
        return call

    def call(self, name: str, arguments: Any = None, *, call_id: str | None = None) -> Any:
        args = parse_arguments(arguments)
        try:
            governed = self.tracer.govern(name, args, call_id=call_id)
        except ThothPolicyViolation as exc:
            if self.on_block == "raise":
                raise
            return block_message(exc)
        final = governed.tool_args if isinstance(governed.tool_args, dict) else args
        try:
            with self.tracer.activated():
                result = self.functions[name](**final)
        except Exception as exc:
            governed.failed(exc)
            raise
        return governed.done(result)

    async def acall(self, name: str, arguments: Any = None, *, call_id: str | None = None) -> Any:
        args = parse_arguments(arguments)
        try:
            governed = await self.tracer.agovern(name, args, call_id=call_id)
        except ThothPolicyViolation as exc:
            if self.on_block == "raise":
                raise
            return block_message(exc)
        final = governed.tool_args if isinstance(governed.tool_args, dict) else args
        try:
            with self.tracer.activated():
                result = self.functions[name](**final)
                if _is_awaitable(result):
                    result = await result
        except Exception as exc:
            governed.failed(exc)
            raise
        return governed.done(result)

    def result_for(self, name: str, arguments: Any, call_id: str | None) -> tuple[str, bool]:
        """(content, is_error) of one model-requested call; unknown tools are an error result."""
        if name not in self.functions:
            return f"Unknown tool '{name}'", True
        try:
            result = self.call(name, arguments, call_id=call_id)
        except ThothPolicyViolation:
            raise
        except Exception as exc:  # the tool's own failure goes back to the model
            return f"Error: {type(exc).__name__}: {exc}", True
        return _text(result), isinstance(result, str) and result.startswith("[blocked by Thoth]")

    async def aresult_for(self, name: str, arguments: Any, call_id: str | None) -> tuple[str, bool]:
        if name not in self.functions:
            return f"Unknown tool '{name}'", True
        try:
            result = await self.acall(name, arguments, call_id=call_id)
        except ThothPolicyViolation:
            raise
        except Exception as exc:
            return f"Error: {type(exc).__name__}: {exc}", True
        return _text(result), isinstance(result, str) and result.startswith("[blocked by Thoth]")


def _text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return str(result)


def _is_coroutine(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _is_awaitable(value: Any) -> bool:
    import inspect

    return inspect.isawaitable(value)


def attr(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from an SDK object or from the equivalent plain dict."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# The user's task (docs/provenance.md, "Task capture by adapter") -------------------------------
def last_user_text(messages: Any) -> str | None:
    """The text of the last user message in what a framework was given: a string (the request
    itself), or a list of messages as dicts ({"role": "user"|"human", "content": ...}) or objects
    (LangChain's HumanMessage: .type == "human"; agentchat's TextMessage: .source == "user")."""
    if isinstance(messages, str):
        return messages or None
    if isinstance(messages, dict):
        messages = messages.get("messages", messages.get("input"))
        if isinstance(messages, str):
            return messages or None
    if not isinstance(messages, list | tuple):
        return None
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else (
            getattr(message, "role", None) or getattr(message, "type", None) or getattr(message, "source", None))
        if isinstance(message, tuple) and len(message) == 2:  # LangGraph's ("user", "text") shorthand
            role, message = message[0], {"content": message[1]}
        if role in ("user", "human"):
            return user_text(message)
    return None


def capture_task(tracer: Any, given: Any) -> None:
    """A new user turn for the tracer's session from what the framework was given; never raises
    (an odd input shape leaves the task as it was)."""
    try:
        text = last_user_text(given)
        if text:
            tracer.session.set_task(text)
    except Exception:  # noqa: BLE001 - the agent's input is not ours to validate; never break a hook
        log.debug("thoth: no task captured from %s", type(given).__name__, exc_info=True)


# Where an LLM client's create() takes the conversation: (path to the resource, argument name).
_CLIENT_INPUTS = {
    "openai": ((("chat", "completions"), "messages"), (("responses",), "input")),
    "anthropic": ((("messages",), "messages"), (("beta", "messages"), "messages")),
}


def capture_client_tasks(client: Any, tracer: Any, provider: str) -> None:
    """Hand-written OpenAI/Anthropic loops: the last user message of each `create` call of this
    client (only this instance) becomes the task. Sync and async clients alike: the wrapper only
    reads the arguments and returns what `create` returns."""
    for path, argument in _CLIENT_INPUTS[provider]:
        resource = client
        for part in path:
            resource = getattr(resource, part, None)
        inner = getattr(resource, "create", None)
        if inner is None or getattr(inner, "__thoth_task__", False):
            continue

        def create(*args: Any, _inner: Any = inner, _argument: str = argument, **kwargs: Any) -> Any:
            capture_task(tracer, kwargs.get(_argument))
            return _inner(*args, **kwargs)

        create.__thoth_task__ = True  # type: ignore[attr-defined]
        with contextlib.suppress(AttributeError, TypeError):
            resource.create = create
