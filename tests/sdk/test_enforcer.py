"""Fail-open, fail-closed and configuration errors of POST /v1/enforce."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from thoth import ThothPolicyViolation

from .wire_server import WireServer, delivered


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_faults_fail_open_with_a_warning(server: WireServer, make_tracer: Any, status: int,
                                                caplog: pytest.LogCaptureFixture) -> None:
    server.fail("/v1/enforce", status, times=1000)  # 429/503 are asked again until the deadline
    tool = make_tracer(enforce_timeout_seconds=0.3).wrap_tool("rm_rf", lambda: "ran")  # would block if asked
    with caplog.at_level(logging.WARNING, logger="thoth"):
        assert tool() == "ran"
    assert any(r.levelno == logging.WARNING and "failing open" in r.message for r in caplog.records)


def test_unreachable_server_fails_open_and_the_count_is_reported(server: WireServer,
                                                                 make_tracer: Any) -> None:
    tracer = make_tracer()
    tool = tracer.wrap_tool("search", lambda q: q)
    server.stop()
    assert tool("a") == "a"
    assert tool("b") == "b"
    server.start()
    events = delivered(server)
    counts = [e["metadata"].get("sdk_fail_open_count") for e in events.values()]
    assert sum(c for c in counts if c) == 2
    pre = [e for e in events.values() if e["event_type"] == "TOOL_CALL_POST"]
    assert {e["metadata"]["fail_mode"] for e in pre} == {"open"}
    assert tracer.enforcer.endpoint.fail_open_total == 2


def test_timeout_fails_open(server: WireServer, make_tracer: Any) -> None:
    server.fail("/v1/enforce", 0, delay=0.5)  # answers late, then normally
    tool = make_tracer(enforce_timeout_seconds=0.1).wrap_tool("rm_rf", lambda: "ran")
    assert tool() == "ran"


@pytest.mark.parametrize("status", [500, 429])
def test_fail_closed_blocks_on_faults(server: WireServer, make_tracer: Any, status: int) -> None:
    server.fail("/v1/enforce", status, times=1000)
    tool = make_tracer(fail_closed=True, enforce_timeout_seconds=0.3).wrap_tool("search", lambda q: q)
    with pytest.raises(ThothPolicyViolation, match="fail_closed"):
        tool("x")


def test_fail_closed_from_environment(server: WireServer, make_tracer: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOTH_FAIL_CLOSED", "1")
    server.stop()
    with pytest.raises(ThothPolicyViolation) as info:
        make_tracer().wrap_tool("search", lambda q: q)("x")
    assert info.value.decision_reason_code == "enforcer_unavailable"


def test_wrong_key_blocks_with_an_actionable_message(server: WireServer, make_tracer: Any) -> None:
    tool = make_tracer(api_key="wrong").wrap_tool("search", lambda q: q)
    with pytest.raises(ThothPolicyViolation) as info:
        tool("x")
    assert "THOTH_API_KEY" in info.value.reason and "401" in info.value.reason
    assert info.value.decision_reason_code == "sdk_configuration_error"


def test_foreign_tenant_is_refused(server: WireServer, make_tracer: Any) -> None:
    with pytest.raises(ThothPolicyViolation, match="403"):
        make_tracer(tenant_id="other-tenant").wrap_tool("search", lambda q: q)("x")


def test_other_4xx_blocks(server: WireServer, make_tracer: Any) -> None:
    server.fail("/v1/enforce", 404)
    with pytest.raises(ThothPolicyViolation, match="THOTH_API_URL"):
        make_tracer().wrap_tool("search", lambda q: q)("x")


def test_missing_url_is_a_clear_value_error() -> None:
    from thoth.instrumentor import build_tracer

    with pytest.raises(ValueError, match="THOTH_API_URL"):
        build_tracer(agent_id="a", approved_scope=[], tenant_id="t")


def test_env_url_overrides_api_url(server: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from thoth.instrumentor import build_tracer

    monkeypatch.setenv("THOTH_API_URL", server.url)
    monkeypatch.setenv("THOTH_API_KEY", server.api_key)
    tracer = build_tracer(agent_id="a", approved_scope=["search"], tenant_id=server.tenant_id,
                          api_url="http://127.0.0.1:9")
    assert tracer.wrap_tool("search", lambda q: q)("x") == "x"
    assert server.enforce_requests[0]["tool_name"] == "search"


def test_behind_a_proxy_the_enforce_call_uses_httpx(server: WireServer, make_tracer: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from thoth.http import Endpoint

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    assert Endpoint("http://thoth.example:8080", "k").fast_path is False
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert Endpoint(server.url, "k").fast_path is True


@pytest.mark.parametrize("key", ["thk_abc\n", "thk_abc\r\nx-evil: 1", "clé"])
def test_a_key_no_header_can_carry_is_a_clear_value_error(server: WireServer, make_tracer: Any, key: str) -> None:
    with pytest.raises(ValueError, match="THOTH_API_KEY"):
        make_tracer(api_key=key)
