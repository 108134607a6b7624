"""POST /v1/enforce: ask the server for a decision on one tool call.

Faults of the infrastructure (connection errors, timeouts, 5xx, 429, an unreadable answer)
fail open: the call is allowed, a WARNING is logged and the fail-open is counted (the next event
batch reports the count). With `fail_closed=True` / THOTH_FAIL_CLOSED=1 they block instead.
A configuration error (401, 403, any other 4xx) always blocks, with a message saying what to fix.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from thoth.http import Endpoint, FastResponse, TransportFault, error_message, get_endpoint
from thoth.models import DecisionType, EnforcementDecision, ThothConfig

log = logging.getLogger("thoth")


class EnforcerClient:
    def __init__(self, config: ThothConfig) -> None:
        self.config = config
        self._local: Any = None
        self.endpoint: Endpoint | None = None
        self.wants_session_tool_calls = not config.is_local  # the local engine keeps its own history
        if config.is_local:
            self._local = _local_engine("LocalEnforcer")(config)
        else:
            self.endpoint = get_endpoint(config.resolved_api_url, config.resolved_api_key)

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return f"{self.endpoint.url}/v1/enforce"

    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        if self._local is not None:
            return self._local.enforce(request)  # type: ignore[no-any-return]
        assert self.endpoint is not None
        response: httpx.Response | FastResponse
        try:
            if self.endpoint.fast_path:
                response = self.endpoint.post_fast("/v1/enforce", request, self.config.enforce_timeout_seconds)
            else:
                response = self.endpoint.client.post(
                    self.url, json=request, headers=self.endpoint.headers(),
                    timeout=self.config.enforce_timeout_seconds,
                )
        except (TransportFault, httpx.HTTPError) as exc:
            return self._fault(str(exc) if isinstance(exc, TransportFault) else f"{type(exc).__name__}: {exc}",
                               request)
        return self._decide(response, request)

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        if self._local is not None:
            local = getattr(self._local, "aenforce", None)
            if local is not None:
                return await local(request)  # type: ignore[no-any-return]
            return self._local.enforce(request)  # type: ignore[no-any-return]
        assert self.endpoint is not None
        response: httpx.Response | FastResponse
        try:
            if self.endpoint.fast_path:
                response = await self.endpoint.arequest_fast("POST", "/v1/enforce", request,
                                                             timeout=self.config.enforce_timeout_seconds)
            else:
                response = await self.endpoint.async_client().post(
                    self.url, json=request, headers=self.endpoint.headers(),
                    timeout=self.config.enforce_timeout_seconds,
                )
        except (TransportFault, httpx.HTTPError) as exc:
            return self._fault(str(exc) if isinstance(exc, TransportFault) else f"{type(exc).__name__}: {exc}",
                               request)
        return self._decide(response, request)

    # ---------------------------------------------------------------------------------------------
    def _decide(self, response: httpx.Response | FastResponse, request: dict[str, Any]) -> EnforcementDecision:
        status = response.status_code
        if status >= 500 or status == 429:
            return self._fault(f"HTTP {status} from {self.url}: {error_message(response)}", request)
        if status in (401, 403):
            return self._config_error(
                f"the Thoth server refused the API key ({status}: {error_message(response)}). "
                f"Set THOTH_API_KEY (or api_key=...) to a valid key of tenant '{self.config.tenant_id}'"
            )
        if status >= 400:
            return self._config_error(
                f"the Thoth server rejected the enforce request ({status}: {error_message(response)}). "
                "Check api_url / THOTH_API_URL points at a Thoth server and the agent's settings"
            )
        try:
            body = response.json()
        except ValueError:
            return self._fault(f"unreadable answer from {self.url} (HTTP {status}, not JSON)", request)
        if not isinstance(body, dict):
            return self._fault(f"unreadable answer from {self.url} (JSON {type(body).__name__})", request)
        return EnforcementDecision.from_wire(body)

    def _fault(self, problem: str, request: dict[str, Any]) -> EnforcementDecision:
        tool = request.get("tool_name")
        if self.config.fail_closed:
            log.warning("Thoth enforcer unavailable (%s); fail_closed is set, blocking %s", problem, tool)
            return EnforcementDecision(
                decision=DecisionType.BLOCK,
                reason=f"Thoth enforcer unavailable and fail_closed is set: {problem}",
                decision_reason_code="enforcer_unavailable",
                fail_mode="closed",
            )
        if self.endpoint is not None:
            self.endpoint.count_fail_open()
        log.warning("Thoth enforcer unavailable (%s); failing open, allowing %s", problem, tool)
        return EnforcementDecision(
            decision=DecisionType.ALLOW,
            reason=f"fail-open: {problem}",
            decision_reason_code="enforcer_unavailable",
            fail_mode="open",
        )

    @staticmethod
    def _config_error(message: str) -> EnforcementDecision:
        log.error("Thoth: %s", message)
        return EnforcementDecision(
            decision=DecisionType.BLOCK,
            reason=message,
            decision_reason_code="sdk_configuration_error",
            fail_mode="config",
        )


def _local_engine(name: str) -> Any:
    """thoth.policy.local.<name>, imported only when api_url='local' (the engine is optional)."""
    try:
        from thoth.policy import local
    except ImportError as exc:
        raise RuntimeError(
            "api_url='local' evaluates policy in-process and needs the policy engine "
            f"(the 'policy' extra: pip install '.[policy]' in a clone of Thoth): {exc}"
        ) from exc
    return getattr(local, name)
