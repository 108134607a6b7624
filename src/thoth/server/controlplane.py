"""Control-plane API (control-plane.md): FastAPI for its validation and the OpenAPI page at /docs.

Every route is scoped to the tenant of the calling key; roles: viewer reads, approver also
resolves approvals, admin also manages policies and keys.
"""



import json
import math
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from thoth.server import engine, health, mcp_api, simulation
from thoth.server.core import READ_ROLES, RESOLVE_ROLES, ClientError, Core, public_approval
from thoth.server.dataplane import UNAVAILABLE_MESSAGE, api_key
from thoth.server.db import RETRY_AFTER, StorageUnavailable, is_unavailable, storage_errors
from thoth.server.openapi_dataplane import add_data_plane
from thoth.server.store import APPROVAL_STATUSES, ROLES, KeyInfo, iso

ADMIN = frozenset({"admin"})
MAX_VERSION = 2**31 - 1  # policy versions are integers the database can store


class Resolve(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=4000)


class PolicyPut(BaseModel):
    document: str | dict[str, Any] = Field(description="policy document: YAML/JSON text or an object")
    comment: str | None = Field(default=None, max_length=2000)


class Simulate(BaseModel):
    document: str | dict[str, Any] = Field(description="the draft policy: YAML/JSON text or an object")
    tenant_id: str | None = Field(default=None, max_length=200, description="checked against the key's tenant")
    days: int = Field(default=simulation.DEFAULT_DAYS, ge=1, le=simulation.MAX_DAYS,
                      description="replay sessions active in the last N days")
    max_sessions: int = Field(default=simulation.DEFAULT_SESSIONS, ge=1, le=simulation.MAX_SESSIONS,
                              description="the most recent sessions only")
    limit: int = Field(default=simulation.DEFAULT_CALLS, ge=1, le=simulation.MAX_CALLS,
                       description="at most this many calls in all")
    max_items: int = Field(default=simulation.DEFAULT_ITEMS, ge=0, le=1000, description="examples listed")


class Rollback(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


class KeyCreate(BaseModel):
    role: Literal["sdk", "approver", "viewer", "admin", "ingest"]
    name: str | None = Field(default=None, max_length=200)


def _cursor(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        cursor = float(value)
    except ValueError:
        raise ClientError(422, "invalid cursor") from None
    if not math.isfinite(cursor):  # cursors are timestamps we handed out
        raise ClientError(422, "invalid cursor")
    return cursor


def build(core: Core) -> FastAPI:
    app = FastAPI(title="Thoth server", version="0.2.0", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Control plane of Thoth. The data plane (/v1/enforce, /v1/enforce/hold/{token}, "
                              "/v1/events/batch) follows the wire contract.")

    def openapi() -> dict[str, Any]:
        # The data plane is raw ASGI (dataplane.py): its paths are documented by hand.
        if app.openapi_schema is None:
            app.openapi_schema = add_data_plane(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def caller(roles: frozenset[str]) -> Any:
        def dependency(request: Request) -> KeyInfo:
            return core.authenticate(api_key(request.scope), roles)
        return dependency

    Reader = Annotated[KeyInfo, Depends(caller(READ_ROLES))]
    Approver = Annotated[KeyInfo, Depends(caller(RESOLVE_ROLES))]
    Admin = Annotated[KeyInfo, Depends(caller(ADMIN))]

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> JSONResponse:
        return JSONResponse({"message": printable(exc.message)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"message": "malformed JSON body"}, status_code=400)
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        # Only where and what: the offending input is not echoed back (it may be huge or hostile).
        brief = [{"loc": [printable(str(p)) for p in e.get("loc", ())], "msg": printable(str(e.get("msg"))),
                  "type": str(e.get("type"))} for e in errors[:20]]
        return JSONResponse({"message": printable("; ".join(parts) or "invalid request"),
                             "errors": jsonable(brief)}, status_code=422)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Reads and writes while the database cannot answer: 503 with Retry-After, never a 500.
        if not is_unavailable(exc):  # e.g. a SQLite OperationalError that is a bug: a 500, logged
            raise exc
        message = str(exc) if isinstance(exc, StorageUnavailable) else UNAVAILABLE_MESSAGE
        return JSONResponse({"message": message}, status_code=503, headers={"Retry-After": RETRY_AFTER})

    for error in storage_errors():
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)

    # Both are answered by thoth.server.health before a request reaches FastAPI (so that they
    # never wait for the writer); declared here for /docs, with the same answers.
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness: the process serves HTTP. Never touches the database."""
        return health.liveness()

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Readiness: the database answers (bounded by the database timeout); 503 when it does not."""
        status, body = await health.readiness(core)
        return JSONResponse(body, status_code=status, headers={"Retry-After": RETRY_AFTER} if status == 503 else None)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> str:
        def holds() -> dict[str, int]:
            try:
                return core.store.pending_holds_by_tenant()
            except Exception as exc:  # a database outage must not hide the counters (503s among them)
                if not is_unavailable(exc):
                    raise
                return {}
        return core.metrics.render(holds, core.writer.unrecorded, tenant_labels=core.settings.metrics_tenant_labels)

    # ---- sessions, violations -----------------------------------------------------------

    @app.get("/v1/sessions", tags=["sessions"])
    def sessions(key: Reader, agent_id: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 cursor: str | None = None) -> dict[str, Any]:
        items, nxt = core.store.list_sessions(key.tenant_id, agent_id, limit, _cursor(cursor))
        return {"items": items, "next_cursor": nxt}

    @app.get("/v1/sessions/{session_id}", tags=["sessions"])
    def session(key: Reader, session_id: str) -> dict[str, Any]:
        found = core.store.get_session(key.tenant_id, session_id)
        if found is None:
            raise ClientError(404, "unknown session")
        return found

    @app.get("/v1/violations", tags=["violations"])
    def violations(key: Reader, agent_id: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   cursor: str | None = None) -> dict[str, Any]:
        items, nxt = core.store.list_violations(key.tenant_id, agent_id, limit, _cursor(cursor))
        return {"items": items, "next_cursor": nxt}

    # ---- approvals ------------------------------------------------------------------------

    @app.get("/v1/approvals", tags=["approvals"])
    def approvals(key: Reader, status: Literal["pending", "approved", "denied", "expired"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100, cursor: str | None = None) -> dict[str, Any]:
        assert status is None or status in APPROVAL_STATUSES
        items, nxt = core.store.list_approvals(key.tenant_id, status, limit, _cursor(cursor))
        return {"items": [public_approval(a) for a in items], "next_cursor": nxt}

    @app.get("/v1/approvals/{approval_id}", tags=["approvals"])
    def approval(key: Reader, approval_id: str) -> dict[str, Any]:
        found = core.store.approval(key.tenant_id, approval_id)
        if found is None:
            raise ClientError(404, "unknown approval")
        return public_approval(found)

    @app.post("/v1/approvals/{approval_id}/resolve", tags=["approvals"])
    async def resolve(key: Approver, approval_id: str, body: Resolve) -> dict[str, Any]:
        approval = await core.resolve_approval(key.tenant_id, approval_id, body.decision == "approve",
                                               f"key:{key.key_id}", body.reason)
        return public_approval(approval)

    # ---- policies -------------------------------------------------------------------------

    @app.get("/v1/policies", tags=["policies"])
    def policy(key: Reader) -> dict[str, Any]:
        active = core.store.active_policy(key.tenant_id)
        if active is None:
            return {"tenant_id": key.tenant_id, "version": None, "document": None, "default": True,
                    "description": "no policy pushed: the default policy applies (approved-scope check; the "
                                   "enforcement mode decides BLOCK or STEP_UP)"}
        return {"tenant_id": key.tenant_id, "default": False, **active}

    @app.put("/v1/policies", tags=["policies"])
    def put_policy(key: Admin, body: PolicyPut) -> dict[str, Any]:
        text = body.document if isinstance(body.document, str) else json.dumps(body.document, default=str, ensure_ascii=False)
        _validate_policy(text)
        version = core.store.add_policy_version(key.tenant_id, text, f"key:{key.key_id}", body.comment)
        core.forget_policy(key.tenant_id)
        return {"tenant_id": key.tenant_id, "version": version, "active": True}

    @app.get("/v1/policies/versions", tags=["policies"])
    def versions(key: Reader) -> dict[str, Any]:
        return {"items": core.store.policy_versions(key.tenant_id), "next_cursor": None}

    @app.get("/v1/policies/versions/{version}", tags=["policies"])
    def version_doc(key: Reader, version: Annotated[int, Path(ge=1, le=MAX_VERSION)]) -> dict[str, Any]:
        doc = core.store.policy_version(key.tenant_id, version)
        if doc is None:
            raise ClientError(404, "unknown policy version")
        return {"tenant_id": key.tenant_id, "version": version, "document": doc}

    @app.post("/v1/policies/simulate", tags=["policies"])
    def simulate_policy(key: Admin, body: Simulate) -> dict[str, Any]:
        """Replay recent sessions through a draft: how many calls it would decide differently."""
        if body.tenant_id is not None and body.tenant_id != key.tenant_id:
            raise ClientError(403, "tenant_id does not match the API key's tenant")
        text = body.document if isinstance(body.document, str) else json.dumps(body.document, default=str, ensure_ascii=False)
        _validate_policy(text)
        policy = engine.compile_policy(text)
        return simulation.run(core.db, key.tenant_id, policy, days=body.days, max_sessions=body.max_sessions,
                              max_calls=body.limit, max_items=body.max_items)

    @app.post("/v1/policies/rollback", tags=["policies"])
    def rollback(key: Admin, body: Rollback) -> dict[str, Any]:
        doc = core.store.policy_version(key.tenant_id, body.version)
        if doc is None:
            raise ClientError(404, "unknown policy version")
        _validate_policy(doc)
        version = core.store.add_policy_version(key.tenant_id, doc, f"key:{key.key_id}",
                                                f"rollback to version {body.version}")
        core.forget_policy(key.tenant_id)
        return {"tenant_id": key.tenant_id, "version": version, "active": True, "rolled_back_to": body.version}

    # ---- keys -----------------------------------------------------------------------------

    @app.get("/v1/keys", tags=["keys"])
    def keys(key: Admin) -> dict[str, Any]:
        return {"items": core.store.list_keys(key.tenant_id), "next_cursor": None}

    @app.post("/v1/keys", tags=["keys"], status_code=201)
    def create_key(key: Admin, body: KeyCreate) -> dict[str, Any]:
        assert body.role in ROLES
        return core.store.create_key(key.tenant_id, body.role, body.name)

    @app.delete("/v1/keys/{key_id}", tags=["keys"])
    def revoke_key(key: Admin, key_id: str) -> dict[str, Any]:
        if not core.store.revoke_key(key_id, key.tenant_id):
            raise ClientError(404, "unknown or already revoked key")
        core.forget_key_cache()
        return {"key_id": key_id, "revoked": True}

    # ---- analytics, audit -----------------------------------------------------------------

    @app.get("/v1/analytics/agents/{agent_id}", tags=["analytics"])
    async def agent_analytics(key: Reader, agent_id: str) -> dict[str, Any]:
        series = await core.read(core.store.agent_risk_series, key.tenant_id, agent_id)
        report = None
        # On the event loop: the tenant's analytics state is not thread-safe. agent_report re-reads
        # the stored baseline first, so it includes what other processes (and past runs) learnt.
        analytics = core.analytics(key.tenant_id)
        if analytics is not None:
            try:
                report = jsonable(analytics.agent_report(agent_id, time.time()))
            except Exception:  # advisory data: an analytics failure must not fail the route
                report = None
        return {"agent_id": agent_id, "series": series, "analytics": report,
                "drift": (report or {}).get("drift"), "analytics_engine": engine.HAVE_ANALYTICS}

    @app.get("/v1/audit/verify", tags=["audit"])
    def audit_verify(key: Reader) -> dict[str, Any]:
        return core.verify(key.tenant_id)

    # ---- MCP tool pins (thoth.server.mcp_api) --------------------------------------------

    mcp_api.add_routes(app, core, Reader, Admin)

    _ = (iso, Response)
    return app


def _validate_policy(text: str) -> None:
    try:
        engine.compile_policy(text)
    except engine.PolicyValidationError as exc:
        errors = [str(e) for e in getattr(exc, "errors", None) or [str(exc)]]
        raise ClientError(422, "invalid policy: " + "; ".join(errors)) from None
    except Exception as exc:  # the engine must not turn a bad document into a 500
        raise ClientError(422, f"invalid policy: {exc}") from None


def printable(text: str) -> str:
    """Messages may quote untrusted text: lone surrogates (valid in JSON escapes, not in UTF-8) become '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def jsonable(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value, default=str))
    except TypeError:  # integers beyond 64 bits: the slower encoder copes
        return json.loads(json.dumps(value, default=str))
