"""The three parts a Tracer talks to, and the one place that picks local or remote ones.

A Tracer asks an `Enforcer` for a verdict, a `StepUp` to wait out a human approval, and hands
audit events to an `Emitter`. With api_url='local' all three run in-process (thoth.policy.local,
imported only then: the policy engine is an optional extra); otherwise they talk to the server
(thoth.enforcer_client, thoth.step_up, thoth.emitter) and share its per-(url, key) resources.
Nothing else in the SDK chooses between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from thoth.models import EnforcementDecision, ThothConfig


@runtime_checkable
class Emitter(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...

    def emit_later(self, build: Callable[[], dict[str, Any]]) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...


@runtime_checkable
class Enforcer(Protocol):
    def enforce(self, request: dict[str, Any]) -> EnforcementDecision: ...

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision: ...


@runtime_checkable
class StepUp(Protocol):
    def wait(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision: ...

    async def await_(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision: ...


class Components(NamedTuple):
    emitter: Emitter
    enforcer: Enforcer
    step_up: StepUp


def make_components(config: ThothConfig) -> Components:
    """Emitter, enforcer and step-up for `config`: in-process for api_url='local', else the server's."""
    if config.is_local:
        local = _local_mode()
        return Components(local.LocalEventSink(config), local.LocalEnforcer(config, wire_errors="block"),
                          local.LocalStepUp(config))
    from thoth.emitter import HttpEmitter
    from thoth.enforcer_client import EnforcerClient
    from thoth.step_up import StepUpClient

    return Components(HttpEmitter(api_url=config.resolved_api_url, api_key=config.resolved_api_key, tls=config.tls),
                      EnforcerClient(config), StepUpClient(config))


def _local_mode() -> Any:
    """thoth.policy.local, imported only when api_url='local' (the engine is optional)."""
    try:
        from thoth.policy import local
    except ImportError as exc:
        raise RuntimeError(
            "api_url='local' evaluates policy in-process and needs the policy engine "
            f"(the 'policy' extra: pip install '.[policy]' in a clone of Thoth): {exc}"
        ) from exc
    return local
