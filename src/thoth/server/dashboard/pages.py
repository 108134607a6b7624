"""The dashboard's routes: one async handler per page, database work in the thread pool."""

from __future__ import annotations

import math
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from thoth.server.dashboard import auth, engine_series, policy_tools, queries, users
from thoth.server.dashboard.auth import Principal
from thoth.server.dashboard.render import SECURITY_HEADERS, page
from thoth.server.dashboard.rollups import Rollups
from thoth.server.dashboard.throttle import DEVICE_COOKIE, DEVICE_SECONDS, Rules, Throttle, Ticket
from thoth.server.notify import tenant_channels
from thoth.server.proxies import Proxies, throttle_key

MAX_FORM_BYTES = 512 * 1024
CHANNEL_KINDS = tenant_channels.KINDS


class Dashboard:
    """Holds the store and caches; its bound methods are the route endpoints."""

    def __init__(self, store: Any, settings: Any = None, core: Any = None) -> None:
        self.store = store
        # The server's Core, when mounted by it: resolving through it wakes long-polling holds
        # at once and fires the notification hooks.
        self.core = core
        self.db = store.db
        self.settings = settings
        self.rollups = Rollups(self.db)
        self.secure_cookies = bool(getattr(settings, "secure_cookies", False))
        # Forwarded headers are read here, on the login path only (see thoth.server.proxies).
        self.proxies = Proxies(getattr(settings, "trusted_proxies", ()) or ())
        self.throttle = Throttle(self.db, Rules.of(settings))

    def warm_in_background(self) -> None:
        """Keep every tenant's hourly roll-ups stored and checked, off the request path (see
        rollups.py), so the first overview after a restart reads them instead of recounting."""
        self.rollups.start(self.store.tenants)

    # ---- plumbing -----------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return await run_in_threadpool(auth.from_api_key, self.store, header[7:].strip())
        token = request.cookies.get(auth.COOKIE)
        if token:
            return await run_in_threadpool(auth.from_cookie, self.db, token)
        return None

    def _denied(self, request: Request) -> Response:
        if request.headers.get("authorization"):
            return JSONResponse({"message": "invalid or revoked API key, or a role below viewer"}, 401)
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), 303)

    async def form(self, request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "form too large")
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        if any("\x00" in k or "\x00" in v[0] for k, v in fields.items()):
            # PostgreSQL cannot store NUL in text; no field has a use for it on either backend.
            raise FormError(422, "form fields must not contain NUL characters")
        return {k: v[0] for k, v in fields.items()}

    def render(self, request: Request, me: Principal, template: str, status: int = 200, **ctx: Any) -> Response:
        return page(template, status, me=me, path=request.url.path, **ctx)

    def error(self, request: Request, me: Principal | None, status: int, message: str) -> Response:
        if me is None or request.headers.get("authorization"):
            return JSONResponse({"message": message}, status, headers=SECURITY_HEADERS)
        return page("error.html", status, me=me, path=request.url.path, code=status, message=message)

    def redirect(self, url: str) -> Response:
        return RedirectResponse(url, 303, headers=SECURITY_HEADERS)

    # ---- login ----------------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        """Cookies get the Secure flag: always with Settings.secure_cookies, else when the
        browser came over https (directly, or per a trusted proxy's X-Forwarded-Proto)."""
        return self.secure_cookies or self.proxies.is_https(request.scope)

    async def login_page(self, request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        resp = page("login.html", csrf=token, error=None, next=_safe_next(request.query_params.get("next")),
                    me=None, path="/login")
        resp.set_cookie(auth.LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=self.secure(request), path="/login")
        return resp

    def _login_refused(self, request: Request, status: int, message: str, nxt: str,
                       headers: dict[str, str] | None = None, **extra: Any) -> Response:
        """The login form again with the reason, or JSON for a client that asked for it."""
        if _wants_json(request):
            return JSONResponse({"message": message, **extra}, status, headers={**SECURITY_HEADERS, **(headers or {})})
        resp = page("login.html", status, csrf=request.cookies.get(auth.LOGIN_CSRF_COOKIE) or "", error=message,
                    next=nxt, me=None, path="/login")
        resp.headers.update(headers or {})
        return resp

    async def _admit(self, request: Request, username: str) -> Ticket | float:
        """Charge a sign-in attempt to the throttle: a Ticket, or the seconds to wait."""
        client = self.proxies.client_address(request.scope)
        device = await run_in_threadpool(self.throttle.known_device, request.cookies.get(DEVICE_COOKIE), username)
        return await run_in_threadpool(self.throttle.admit, username, client, throttle_key(client), device)

    async def login(self, request: Request) -> Response:
        try:
            f = await self.form(request)
        except FormError as exc:
            return JSONResponse({"message": exc.message}, exc.status)
        nxt = _safe_next(f.get("next"))
        if not auth.same_token(f.get("csrf_token"), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
            return self._login_refused(request, 403, "Your login form expired. Please try again.", nxt)
        username = f.get("username", "")
        ticket = await self._admit(request, username)
        if not isinstance(ticket, Ticket):  # locked out: the password is not even checked
            wait = math.ceil(ticket)
            return self._login_refused(request, 429, f"Too many failed sign-ins. Try again in {_duration(wait)}.",
                                       nxt, {"Retry-After": str(wait)}, retry_after_seconds=wait)
        user = await run_in_threadpool(users.authenticate, self.db, username, f.get("password", ""))
        if user is None:
            await run_in_threadpool(self.throttle.failed, ticket)
            return self._login_refused(request, 401, "Wrong username or password.", nxt)
        await run_in_threadpool(self.throttle.succeeded, ticket)
        token = await run_in_threadpool(auth.start_login, self.db, user)
        secure = self.secure(request)
        resp = self.redirect(nxt)
        resp.set_cookie(auth.COOKIE, token, max_age=auth.SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=secure, path="/")
        resp.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login")
        if ticket.device is None:  # this browser now counts its own sign-ins for this user
            device = await run_in_threadpool(self.throttle.remember_device, user.username)
            resp.set_cookie(DEVICE_COOKIE, device, max_age=DEVICE_SECONDS, httponly=True, samesite="strict",
                            secure=secure, path="/login")
        return resp

    async def logout(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        token = request.cookies.get(auth.COOKIE)
        if token:
            await run_in_threadpool(auth.end_login, self.db, token)
        resp = self.redirect("/login")
        resp.delete_cookie(auth.COOKIE, path="/")
        return resp

    # ---- overview -------------------------------------------------------------------------

    async def overview(self, request: Request, me: Principal) -> Response:
        rng = _choice(request.query_params.get("range"), queries.RANGES, "24h")
        data = await run_in_threadpool(queries.overview, self.rollups, me.tenant_id, rng)
        if request.query_params.get("part") == "filling":  # the notice polling while hours are counted
            if not data["filling"]:
                return Response(headers={"HX-Refresh": "true", **SECURITY_HEADERS})
            return self.render(request, me, "_overview_filling.html", data=data, range=rng)
        pending = await run_in_threadpool(queries.pending_approvals, self.db, me.tenant_id, 8)
        return self.render(request, me, "overview.html", data=data, range=rng, ranges=list(queries.RANGES),
                           pending=pending, nav="overview")

    # ---- sessions -------------------------------------------------------------------------

    async def sessions(self, request: Request, me: Principal) -> Response:
        qp = request.query_params
        filters = {"agent": qp.get("agent", "")[:300], "user": qp.get("user", "")[:300],
                   "outcome": _choice(qp.get("outcome"), queries.OUTCOMES, ""),
                   "since": _choice(qp.get("since"), queries.SINCE, ""), "q": qp.get("q", "").strip()[:300]}
        items, nxt = await run_in_threadpool(lambda: queries.list_sessions(
            self.db, me.tenant_id, agent=filters["agent"], user=filters["user"], outcome=filters["outcome"],
            since=filters["since"], q=filters["q"], cursor=qp.get("cursor")))
        agents = await run_in_threadpool(queries.known_agents, self.db, me.tenant_id)
        next_url = _with(request, cursor=nxt) if nxt else None
        return self.render(request, me, "sessions.html", items=items, filters=filters, agents=agents,
                           next_url=next_url, outcomes=queries.OUTCOMES, since_choices=list(queries.SINCE),
                           first_page=not qp.get("cursor"), nav="sessions")

    async def session(self, request: Request, me: Principal) -> Response:
        sid = request.path_params["session_id"]
        session = await run_in_threadpool(queries.get_session, self.db, me.tenant_id, sid)
        if session is None:
            return self.error(request, me, 404, "No such session in this tenant.")
        after, before = _int(request.query_params.get("after")), _int(request.query_params.get("before"))
        tl = await run_in_threadpool(lambda: queries.session_timeline(self.db, me.tenant_id, sid, after=after,
                                                                      before=before))
        return self.render(request, me, "session.html", s=session, tl=tl, nav="sessions",
                           page_size=queries.TIMELINE_PAGE)

    # ---- violations -----------------------------------------------------------------------

    async def violations(self, request: Request, me: Principal) -> Response:
        qp = request.query_params
        vid = qp.get("id", "").strip()
        if vid:
            return self.redirect("/violations/" + urllib.parse.quote(vid, safe=""))
        filters = {"agent": qp.get("agent", "")[:300], "decision": _choice(qp.get("decision"),
                                                                           ("BLOCK", "STEP_UP"), "")}
        items, nxt = await run_in_threadpool(lambda: queries.list_violations(
            self.db, me.tenant_id, agent=filters["agent"], decision=filters["decision"], cursor=qp.get("cursor")))
        agents = await run_in_threadpool(queries.known_agents, self.db, me.tenant_id)
        return self.render(request, me, "violations.html", items=items, filters=filters, agents=agents,
                           next_url=_with(request, cursor=nxt) if nxt else None, nav="violations")

    async def violation(self, request: Request, me: Principal) -> Response:
        v = await run_in_threadpool(queries.violation, self.db, me.tenant_id, request.path_params["violation_id"])
        if v is None:
            return self.error(request, me, 404, "No such violation in this tenant.")
        return self.render(request, me, "violation.html", v=v, nav="violations")

    # ---- approvals ------------------------------------------------------------------------

    async def _queue(self, me: Principal) -> dict[str, Any]:
        pending = await run_in_threadpool(queries.pending_approvals, self.db, me.tenant_id)
        version = await run_in_threadpool(queries.approvals_version, self.db, me.tenant_id)
        return {"pending": pending, "version": version}

    async def approvals(self, request: Request, me: Principal) -> Response:
        q = await self._queue(me)
        history = await run_in_threadpool(queries.resolved_approvals, self.db, me.tenant_id)
        return self.render(request, me, "approvals.html", **q, history=history, nav="approvals", notice=None)

    async def approvals_live(self, request: Request, me: Principal) -> Response:
        """Polled by the queue every 2 s: 204 (nothing to swap) unless something changed."""
        version = await run_in_threadpool(queries.approvals_version, self.db, me.tenant_id)
        if version == request.query_params.get("v"):
            return Response(status_code=204)
        q = await self._queue(me)
        history = await run_in_threadpool(queries.resolved_approvals, self.db, me.tenant_id)
        return self.render(request, me, "_approvals_live.html", **q, history=history, notice=None)

    async def resolve(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("approver"):
            return self.error(request, me, 403, "Resolving approvals needs the approver or admin role.")
        decision = f.get("decision")
        if decision not in ("approve", "deny"):
            return self.error(request, me, 422, "decision must be approve or deny")
        reason = f.get("reason", "").strip()[:2000] or None
        status, approval = await self._resolve(me, request.path_params["approval_id"], decision == "approve", reason)
        if status == "not_found":
            return self.error(request, me, 404, "No such approval in this tenant.")
        if status == "not_pending":
            notice = f"Already {approval['status'] if approval else 'resolved'}; nothing changed."
        elif status.startswith("refused:"):
            notice = status.removeprefix("refused:") + " Nothing changed."
        else:
            notice = f"{'Approved' if decision == 'approve' else 'Denied'}: {approval['tool_name'] if approval else ''}"
        if request.headers.get("hx-request"):
            q = await self._queue(me)
            history = await run_in_threadpool(queries.resolved_approvals, self.db, me.tenant_id)
            return self.render(request, me, "_approvals_live.html", **q, history=history, notice=notice)
        return self.redirect("/approvals")

    async def _resolve(self, me: Principal, approval_id: str, approve: bool,
                       reason: str | None) -> tuple[str, dict[str, Any] | None]:
        if self.core is None:
            return await run_in_threadpool(self.store.resolve_approval, me.tenant_id, approval_id, approve,
                                           me.actor, reason)
        from thoth.server.core import ClientError

        try:
            return "ok", await self.core.resolve_approval(me.tenant_id, approval_id, approve, me.actor, reason,
                                                          via="dashboard")
        except ClientError as exc:
            if exc.status == 404:
                return "not_found", None
            if exc.status == 403:  # e.g. the requester may not approve their own call
                return "refused:" + exc.message, None
            current = await run_in_threadpool(self.store.approval, me.tenant_id, approval_id)
            return "not_pending", current

    # ---- policies -------------------------------------------------------------------------

    async def policies(self, request: Request, me: Principal, *, draft: str | None = None,
                       errors: list[dict[str, Any]] | None = None, notice: str | None = None,
                       status: int = 200) -> Response:
        active = await run_in_threadpool(self.store.active_policy, me.tenant_id)
        versions = await run_in_threadpool(self.store.policy_versions, me.tenant_id)
        text = draft if draft is not None else (active or {}).get("document") or policy_tools.starter()
        return self.render(request, me, "policies.html", status, active=active, versions=versions, draft=text,
                           errors=errors or [], notice=notice, nav="policies")

    async def validate_policy(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        try:
            errors = await run_in_threadpool(policy_tools.validate, f.get("document", ""))
        except policy_tools.EngineMissing as exc:
            errors = [{"line": None, "message": str(exc)}]
        return self.render(request, me, "_policy_errors.html", errors=errors, checked=True)

    async def save_policy(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Changing the policy needs the admin role.")
        document = f.get("document", "").replace("\r\n", "\n")
        try:
            errors = await run_in_threadpool(policy_tools.validate, document)
        except policy_tools.EngineMissing as exc:
            errors = [{"line": None, "message": str(exc)}]
        if errors:
            return await self.policies(request, me, draft=document, errors=errors, status=422)
        version = await run_in_threadpool(self.store.add_policy_version, me.tenant_id, document, me.actor,
                                          f.get("comment", "").strip()[:500] or None)
        return await self.policies(request, me, notice=f"Saved and activated version {version}.")

    async def policy_version(self, request: Request, me: Principal) -> Response:
        v = _int(request.path_params["version"])
        text = await run_in_threadpool(self.store.policy_version, me.tenant_id, v) if v is not None else None
        if text is None or v is None:
            return self.error(request, me, 404, "No such policy version.")
        versions = await run_in_threadpool(self.store.policy_versions, me.tenant_id)
        against = _int(request.query_params.get("against"))
        if against is None:
            older = [x["version"] for x in versions if x["version"] < v]
            against = max(older) if older else None
        old = await run_in_threadpool(self.store.policy_version, me.tenant_id, against) if against else None
        lines = policy_tools.diff(old or "", text, f"version {against}" if against else "(none)", f"version {v}")
        return self.render(request, me, "policy_version.html", version=v, text=text, against=against,
                           diff=lines, versions=versions, nav="policies")

    async def rollback_policy(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Rolling back needs the admin role.")
        v = _int(request.path_params["version"])
        text = await run_in_threadpool(self.store.policy_version, me.tenant_id, v) if v is not None else None
        if text is None:
            return self.error(request, me, 404, "No such policy version.")
        new = await run_in_threadpool(self.store.add_policy_version, me.tenant_id, text, me.actor,
                                      f"rollback to version {v}")
        return await self.policies(request, me, notice=f"Rolled back: version {v} is active again as version {new}.")

    async def simulate_policy(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("approver"):
            return self.error(request, me, 403, "Simulation needs the approver or admin role.")
        days = max(1, min(_int(f.get("days")) or 7, 90))
        document = f.get("document", "")
        try:
            errors = await run_in_threadpool(policy_tools.validate, document)
            sim = None if errors else await run_in_threadpool(policy_tools.simulate, self.db, me.tenant_id,
                                                              document, days)
        except policy_tools.EngineMissing as exc:
            errors, sim = [{"line": None, "message": str(exc)}], None
        return self.render(request, me, "_simulation.html", sim=sim, errors=errors, days=days)

    # ---- analytics ------------------------------------------------------------------------

    async def analytics(self, request: Request, me: Principal) -> Response:
        rng = _choice(request.query_params.get("range"), queries.RANGES, "7d")
        data = await run_in_threadpool(queries.agent_series, self.rollups, me.tenant_id, rng)
        data = engine_series.apply(data, self._engine_reports(me.tenant_id, list(data["agents"])))
        agent = request.query_params.get("agent") or ""
        return self.render(request, me, "analytics.html", data=data, range=rng, ranges=list(queries.RANGES),
                           agent=agent, nav="analytics")

    def _engine_reports(self, tenant_id: str, agents: list[str]) -> dict[str, dict[str, Any]]:
        """The analytics engine's report per agent (GET /v1/analytics/agents/{id}'s body). On the
        event loop: the tenant's engine is not thread-safe; each report re-reads the stored
        baseline, so it includes what other processes learnt."""
        analytics = self.core.analytics(tenant_id) if self.core is not None else None
        if analytics is None:
            return {}
        now, out = time.time(), {}
        for agent in agents:
            try:
                out[agent] = analytics.agent_report(agent, now)
            except Exception:  # advisory data: the page falls back to the decisions' risk
                continue
        return out

    # ---- settings -------------------------------------------------------------------------

    async def settings_page(self, request: Request, me: Principal, *, created_key: dict[str, Any] | None = None,
                            notice: str | None = None, error: str | None = None, status: int = 200) -> Response:
        keys = await run_in_threadpool(self.store.list_keys, me.tenant_id) if me.can("admin") else []
        people = await run_in_threadpool(users.list_users, self.db, me.tenant_id) if me.can("admin") else []
        channels = await run_in_threadpool(list_channels, self.db, me.tenant_id)
        return self.render(request, me, "settings.html", status, keys=keys, people=people, channels=channels,
                           created_key=created_key, notice=notice, error=error, roles=users.USER_ROLES,
                           key_roles=("sdk", "viewer", "approver", "admin"), channel_kinds=CHANNEL_KINDS,
                           nav="settings")

    async def refused(self, request: Request, me: Principal, status: int, message: str) -> Response:
        """A settings change that did not happen: the page with the reason (JSON for API keys)."""
        if request.headers.get("authorization"):
            return self.error(request, me, status, message)
        return await self.settings_page(request, me, error=message, status=status)

    async def create_key(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing API keys needs the admin role.")
        role = f.get("role", "")
        if role not in ("sdk", "viewer", "approver", "admin"):
            return await self.settings_page(request, me, error="Choose a role for the key.", status=422)
        key = await run_in_threadpool(self.store.create_key, me.tenant_id, role, f.get("name", "").strip()[:200] or None)
        return await self.settings_page(request, me, created_key=key)

    async def revoke_key(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing API keys needs the admin role.")
        key_id = request.path_params["key_id"]
        if await run_in_threadpool(self.store.revoke_key, key_id, me.tenant_id):
            return await self.settings_page(request, me, notice="Key revoked.")
        keys = await run_in_threadpool(self.store.list_keys, me.tenant_id)
        if any(k["key_id"] == key_id for k in keys):
            return await self.settings_page(request, me, notice="Key was already revoked.")
        return await self.refused(request, me, 404, "No such API key in this tenant; nothing was revoked.")

    async def create_user(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing users needs the admin role.")
        try:
            await run_in_threadpool(users.create_user, self.db, f.get("username", "").strip(), f.get("password", ""),
                                    f.get("role", ""), me.tenant_id)
        except users.UserError as exc:
            return await self.settings_page(request, me, error=str(exc), status=422)
        return await self.settings_page(request, me, notice=f"User {f.get('username', '').strip()} created.")

    async def update_user(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing users needs the admin role.")
        name = request.path_params["username"]
        if name == me.name and me.via == "cookie":
            return await self.settings_page(request, me, error="You cannot change or disable your own account here.",
                                            status=422)
        target = await run_in_threadpool(users.get_user, self.db, name)
        if target is None or target.tenant_id != me.tenant_id:  # another tenant's user is not ours to touch
            return await self.refused(request, me, 404, f"No user {name} in this tenant; nothing changed.")
        try:
            if f.get("action") == "disable":
                if not await run_in_threadpool(users.disable_user, self.db, me.tenant_id, name):
                    return await self.refused(request, me, 409, f"User {name} was already disabled.")
                notice = f"User {name} disabled."
            else:
                if not await run_in_threadpool(users.set_role, self.db, me.tenant_id, name, f.get("role", "")):
                    return await self.refused(request, me, 404, f"No user {name} in this tenant; nothing changed.")
                notice = f"User {name} is now {f.get('role')}."
        except users.UserError as exc:
            return await self.settings_page(request, me, error=str(exc), status=422)
        return await self.settings_page(request, me, notice=notice)

    async def change_password(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if me.via != "cookie":
            return self.error(request, me, 403, "Only a logged-in user can change their password.")
        # Throttled like the login: a stolen session must not become a way to guess the password.
        ticket = await self._admit(request, me.name)
        if not isinstance(ticket, Ticket):
            wait = math.ceil(ticket)
            resp = await self.settings_page(request, me, error=f"Too many failed attempts. Try again in "
                                            f"{_duration(wait)}.", status=429)
            resp.headers["Retry-After"] = str(wait)
            return resp
        if await run_in_threadpool(users.authenticate, self.db, me.name, f.get("current", "")) is None:
            await run_in_threadpool(self.throttle.failed, ticket)
            return await self.settings_page(request, me, error="Current password is wrong.", status=422)
        await run_in_threadpool(self.throttle.succeeded, ticket)
        try:
            await run_in_threadpool(users.set_password, self.db, me.name, f.get("new", ""))
        except users.UserError as exc:
            return await self.settings_page(request, me, error=str(exc), status=422)
        return self.redirect("/login")

    async def add_channel(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing channels needs the admin role.")
        kind, target = f.get("kind", ""), f.get("target", "").strip()
        fields = {name: f.get(name, "").strip() for name in ("secret", "agent", "rule", "bot_token", "signing_secret")}
        problem = tenant_channels.problem(kind, target, **fields)
        if problem:
            return await self.settings_page(request, me, error=problem, status=422)
        await run_in_threadpool(lambda: tenant_channels.add(self.db, me.tenant_id, kind, target, me.actor, **fields))
        return await self.settings_page(request, me, notice="Channel added. Its secrets are stored and not shown again.")

    async def delete_channel(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        if not me.can("admin"):
            return self.error(request, me, 403, "Managing channels needs the admin role.")
        if not await run_in_threadpool(tenant_channels.delete, self.db, me.tenant_id, request.path_params["channel_id"]):
            return await self.refused(request, me, 404, "No such channel in this tenant (removed already?);"
                                      " nothing was removed.")
        return await self.settings_page(request, me, notice="Channel removed.")


    # ---- MCP tools (thoth.server.mcp_pins) ------------------------------------------------

    def _pins(self) -> Any:
        from thoth.server.mcp_pins import McpPins

        return self.core.mcp_pins if self.core is not None else McpPins(self.db)

    async def mcp_tools(self, request: Request, me: Principal, *, notice: str | None = None,
                        error: str | None = None, status: int = 200) -> Response:
        from thoth.server.mcp_suspicion import reveal

        pins = self._pins()
        servers = await run_in_threadpool(pins.servers, me.tenant_id)
        tools: dict[str, list[dict[str, Any]]] = {}
        for tool in await run_in_threadpool(pins.tools, me.tenant_id):
            for side in ("pinned", "current"):
                if tool[side] is not None:
                    tool[side]["shown"] = reveal(tool[side]["description"] or "")
            tools.setdefault(tool["mcp_server"], []).append(tool)
        return self.render(request, me, "mcp.html", status, servers=servers, tools=tools, notice=notice, error=error,
                           nav="mcp")

    async def approve_mcp(self, request: Request, me: Principal, f: dict[str, str]) -> Response:
        from thoth.server.mcp_pins import PinError

        if not me.can("admin"):
            return self.error(request, me, 403, "Approving an MCP tool's change needs the admin role.")
        server, tool = f.get("mcp_server", ""), f.get("tool_name", "")
        try:
            await run_in_threadpool(self._pins().approve, me.tenant_id, server, tool, me.actor)
        except (LookupError, PinError) as exc:
            status = 404 if isinstance(exc, LookupError) else 409
            message = "No such MCP tool in this tenant; nothing was approved." if status == 404 else str(exc)
            if request.headers.get("authorization"):
                return self.error(request, me, status, message)
            return await self.mcp_tools(request, me, error=message, status=status)
        return await self.mcp_tools(request, me, notice=f"{tool} of {server} is pinned to what its server says now.")


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Page = Callable[[Request, Principal], Awaitable[Response]]
Action = Callable[[Request, Principal, dict[str, str]], Awaitable[Response]]


def viewer_page(dash: Dashboard, handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """GET endpoint: any logged-in user or an API key of role viewer or above."""

    async def endpoint(request: Request) -> Response:
        me = await dash.principal(request)
        if me is None:
            return dash._denied(request)
        return await handler(request, me)

    return endpoint


def action(dash: Dashboard, handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """POST endpoint: cookie logins must carry the CSRF token of their login (form field or
    X-CSRF-Token header); API keys are not ambient credentials, so they need none."""

    async def endpoint(request: Request) -> Response:
        me = await dash.principal(request)
        if me is None:
            return dash._denied(request)
        try:
            f = await dash.form(request)
        except FormError as exc:
            return dash.error(request, me, exc.status, exc.message)
        if me.via == "cookie":
            sent = request.headers.get("x-csrf-token") or f.get("csrf_token")
            if not auth.same_token(sent, me.csrf_token):
                return dash.error(request, me, 403, "The form's security token is missing or stale; reload the page.")
        return await handler(request, me, f)

    return endpoint


# ---- helpers ----------------------------------------------------------------------------------


def _choice(value: str | None, allowed: Any, default: str) -> str:
    return value if value is not None and value in allowed else default


def _int(value: Any) -> int | None:
    try:
        return int(str(value)) if value is not None and str(value).strip() != "" else None
    except ValueError:
        return None


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


def _safe_next(value: str | None) -> str:
    # Only paths on this server: "//host" and "/\\host" would leave it.
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _with(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    params.update({k: v for k, v in changes.items() if v is not None})
    return request.url.path + "?" + urllib.parse.urlencode(params)


# ---- notification channels: thoth.server.notify.tenant_channels (read by the notifier) ---------


def list_channels(db: Any, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's channels as the Settings page shows them (no secrets)."""
    return tenant_channels.listing(db, tenant_id)
