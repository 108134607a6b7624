"""The routes a request of the SDK can take, for tests that must hold on every one of them.

"own": the SDK's own HTTP/1.1 clients (thoth.sync_http, thoth.async_http), used when no proxy
applies; "proxy": httpx through the HTTP proxy that `http_proxy` names, the test's server playing
the proxy (it sees absolute-form request targets), for an api_url whose host only the proxy knows.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from thoth.http import Endpoint
from thoth.models import ThothConfig
from thoth.session import SessionContext
from thoth.tracer import Tracer

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                   "no_proxy", "NO_PROXY")


def url_for(server_url: str, route: str, monkeypatch: pytest.MonkeyPatch, scheme: str = "http") -> str:
    """The SDK's api_url for `route`: the server itself, or a name only the proxy (the server) is
    asked about (for https, through a CONNECT tunnel)."""
    if route == "own":
        url = server_url.replace("http://", f"{scheme}://")
    else:
        monkeypatch.setenv(f"{scheme}_proxy", server_url)
        url = f"{scheme}://thoth-{uuid.uuid4().hex[:8]}.proxied.test:8443"
    assert Endpoint(url, "k").fast_path is (route == "own")  # the route the test claims
    return url


def request_target(request_line: bytes) -> bytes:
    """`/v1/enforce` of `POST /v1/enforce HTTP/1.1` and of `POST http://host/v1/enforce HTTP/1.1`."""
    target = request_line.split(b" ")[1]
    if target.startswith(b"http://"):
        target = b"/" + target.split(b"/", 3)[3]
    return target


class Collector:
    """An emitter that keeps the events (for tests about the call rather than about delivery)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def config(url: str, **settings: Any) -> ThothConfig:
    return ThothConfig(agent_id="a", approved_scope=["search"], tenant_id="t", api_key="k", api_url=url,
                       enforcement="block", **settings)


def tracer_for(cfg: ThothConfig) -> tuple[Tracer, Collector]:
    """A tracer on the real enforcer and step-up clients whose events stay in memory."""
    from thoth.enforcer_client import EnforcerClient
    from thoth.step_up import StepUpClient

    emitter = Collector()
    return Tracer(cfg, SessionContext(cfg), emitter=emitter, enforcer=EnforcerClient(cfg),
                  step_up=StepUpClient(cfg)), emitter
