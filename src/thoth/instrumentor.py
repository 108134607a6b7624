"""instrument(), instrument_openai(), instrument_anthropic(), flush(): the three-line API.

Framework objects are recognised by the module of their class (never by importing the
framework; the table is thoth.integrations.registry) and handed to their adapter's
`instrument_agent(agent, tracer)`; anything else with a `.tools` list is a generic agent
(thoth.integrations.generic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from thoth.components import make_components
from thoth.integrations import registry
from thoth.integrations._base import capture_client_tasks
from thoth.integrations.generic import instrument_agent
from thoth.models import EnforcementMode, ThothConfig
from thoth.session import SessionContext
from thoth.tracer import Tracer, _governed_callable, _is_async


def build_tracer(
    *,
    agent_id: str,
    approved_scope: list[str] | None = None,
    tenant_id: str,
    user_id: str = "system",
    enforcement: str | EnforcementMode = "progressive",
    api_key: str | None = None,
    api_url: str | None = None,
    session_id: str | None = None,
    **extra: Any,
) -> Tracer:
    """A Tracer for one agent; ThothConfig's extra fields (fail_closed, environment...) via **extra."""
    config = ThothConfig(
        agent_id=agent_id, approved_scope=list(approved_scope or []), tenant_id=tenant_id,
        user_id=user_id, enforcement=enforcement,  # type: ignore[arg-type]  # the validator parses str
        api_key=api_key, api_url=api_url, session_id=session_id, **extra,
    )
    config.resolved_api_url  # noqa: B018 - a missing URL is a clear ValueError now, not at the first call
    session = SessionContext(config)
    emitter, enforcer, step_up = make_components(config)
    return Tracer(config=config, session=session, emitter=emitter, enforcer=enforcer, step_up=step_up)


def instrument(
    agent: Any,
    agent_id: str,
    approved_scope: list[str],
    tenant_id: str,
    user_id: str = "system",
    enforcement: str | EnforcementMode = "progressive",
    api_key: str | None = None,
    api_url: str | None = None,
    session_id: str | None = None,
    on_block: str | None = None,
    mcp_server: str | None = None,
    **extra: Any,
) -> Any:
    """Govern every tool call of `agent`; returns the same object, mutated in place.

    `mcp_server` (an mcp ClientSession): the server's configured name, which policy sees.

    `on_block` (framework agents only): "raise" stops the run with ThothPolicyViolation, "return"
    hands the model an error result so the run goes on; each framework has its own default.
    """
    framework = registry.for_agent(agent)
    if framework is None and not isinstance(getattr(agent, "tools", None), list):
        raise TypeError(
            f"thoth.instrument() does not know how to govern a {type(agent).__module__}."
            f"{type(agent).__qualname__}: give it a .tools list (tools with .run or plain callables), "
            "or wrap tools yourself with Tracer.wrap_tool"
        )
    tracer = build_tracer(
        agent_id=agent_id, approved_scope=approved_scope, tenant_id=tenant_id, user_id=user_id,
        enforcement=enforcement, api_key=api_key, api_url=api_url, session_id=session_id, **extra,
    )
    if framework is None:
        instrument_agent(agent, tracer)
    else:
        options: dict[str, Any] = {} if on_block is None else {"on_block": on_block}
        if mcp_server is not None:
            options["mcp_server"] = mcp_server
        adapter = registry.load(framework)
        if not hasattr(adapter, "instrument_agent"):
            raise RuntimeError(f"thoth.integrations.{framework.module} has no instrument_agent(); this build "
                               f"cannot instrument {framework.name} agents automatically")
        adapter.instrument_agent(agent, tracer, **options)
    tracer.session.activate()  # get_current_session() in this thread / task from now on
    return agent


def detect_framework(agent: Any) -> str | None:
    """The adapter module (thoth.integrations.<name>) that governs `agent`, or None."""
    found = registry.for_agent(agent)
    return None if found is None else found.module


def instrument_openai(tools: dict[str, Callable[..., Any]], **settings: Any) -> dict[str, Callable[..., Any]]:
    """Governed versions of OpenAI tool functions; call them with the parsed arguments dict.
    `client=` (optional): the loop's OpenAI client, whose requests give the user's task."""
    return _governed_dict(tools, settings, "openai")


def instrument_anthropic(tools: dict[str, Callable[..., Any]], **settings: Any) -> dict[str, Callable[..., Any]]:
    """Governed versions of Anthropic tool functions; call them with `block.input`.
    `client=` (optional): the loop's Anthropic client, whose requests give the user's task."""
    return _governed_dict(tools, settings, "anthropic")


def _governed_dict(tools: dict[str, Callable[..., Any]], settings: dict[str, Any],
                   provider: str) -> dict[str, Callable[..., Any]]:
    if not isinstance(tools, dict):
        raise TypeError("expected a dict of tool name -> function")
    client = settings.pop("client", None)
    tracer = build_tracer(**settings)
    tracer.session.activate()
    if client is not None:
        capture_client_tasks(client, tracer, provider)
    return {name: _dispatcher(tracer, name, fn) for name, fn in tools.items()}


def _dispatcher(tracer: Tracer, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`governed[name](arguments)`: a dict (or JSON object text) becomes keyword arguments."""
    inner = _governed_callable(tracer, name, fn)

    def split(arguments: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                arguments = parsed
        if arguments is _MISSING:
            return (), kwargs
        if isinstance(arguments, dict) and not kwargs:
            return (), {str(k): v for k, v in arguments.items()}
        return (arguments,), kwargs

    if _is_async(fn):
        async def call_async(arguments: Any = _MISSING, /, **kwargs: Any) -> Any:
            args, kw = split(arguments, kwargs)
            return await inner(*args, **kw)

        wrapper: Any = call_async
    else:
        def call(arguments: Any = _MISSING, /, **kwargs: Any) -> Any:
            args, kw = split(arguments, kwargs)
            return inner(*args, **kw)

        wrapper = call
    wrapper.__name__ = getattr(fn, "__name__", name)
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    wrapper.__thoth_original__ = fn
    return wrapper  # type: ignore[no-any-return]


_MISSING: Any = object()


def flush(timeout: float = 5.0) -> bool:
    """Send every queued audit event now; True if all were delivered (or dropped) in time."""
    import sys

    from thoth.http import flush_all

    delivered = flush_all(timeout)
    local = sys.modules.get("thoth.policy.local")  # only loaded when an agent runs in local mode
    if local is not None:
        delivered = local.flush_local_sinks(timeout) and delivered
    return delivered
