"""The Thoth dashboard: server-rendered pages for sessions, violations, approvals, policies,
analytics and settings, mounted into the server's Starlette app.

The server wires it with one call after its own routes (thoth.server.app does)::

    dashboard.register(app, core)

which adds the routes and, on the very first start, creates the first admin user and prints its
password once. Without a Core (tests, other hosts): `mount(app, store, settings)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from thoth.server.dashboard.cli import register_cli
from thoth.server.dashboard.pages import Dashboard, action, viewer_page

__all__ = ["Dashboard", "ensure_first_admin", "mount", "register", "register_cli", "routes"]

STATIC_PREFIX = "/dashboard-static"


def routes(store: Any, settings: Any = None, core: Any = None, warm: bool = False) -> list[BaseRoute]:
    # The tables are the server's migrations' (0007): Core ran them before mounting.
    d = Dashboard(store, settings, core)
    if warm:
        d.warm_in_background()

    def get(path: str, handler: Any) -> Route:
        return Route(path, viewer_page(d, handler), methods=["GET"])

    def post(path: str, handler: Any) -> Route:
        return Route(path, action(d, handler), methods=["POST"])

    return [
        Route("/login", d.login_page, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        post("/logout", d.logout),
        get("/", d.overview),
        get("/sessions", d.sessions),
        get("/sessions/{session_id:path}", d.session),
        get("/violations", d.violations),
        get("/violations/{violation_id:path}", d.violation),
        get("/approvals", d.approvals),
        get("/approvals/live", d.approvals_live),
        post("/approvals/{approval_id}/resolve", d.resolve),
        get("/policies", d.policies),
        post("/policies", d.save_policy),
        post("/policies/validate", d.validate_policy),
        post("/policies/simulate", d.simulate_policy),
        get("/policies/versions/{version}", d.policy_version),
        post("/policies/versions/{version}/rollback", d.rollback_policy),
        get("/analytics", d.analytics),
        get("/mcp", d.mcp_tools),
        post("/mcp/approve", d.approve_mcp),
        get("/settings", d.settings_page),
        post("/settings/keys", d.create_key),
        post("/settings/keys/{key_id}/revoke", d.revoke_key),
        post("/settings/users", d.create_user),
        post("/settings/users/{username}", d.update_user),
        post("/settings/password", d.change_password),
        post("/settings/channels", d.add_channel),
        post("/settings/channels/{channel_id}/delete", d.delete_channel),
        Mount(STATIC_PREFIX, app=StaticFiles(directory=Path(__file__).parent / "static"), name="dashboard-static"),
    ]


def mount(app: Any, store: Any, settings: Any = None, core: Any = None) -> None:
    """Add the dashboard's routes to a Starlette (or FastAPI) app, after the app's own routes."""
    app.router.routes.extend(routes(store, settings, core, warm=core is not None))


def register(app: Any, core: Any) -> None:
    """Called by thoth.server.app with the control-plane app and the server's Core."""
    mount(app, core.store, core.settings, core)
    tenant = "demo" if getattr(core.settings, "demo", False) else "default"
    created = ensure_first_admin(core.store, tenant)
    if created is not None:
        print(f"Dashboard: first admin user {created[0]!r} (tenant {tenant!r}), password {created[1]}"
              "  (shown once; change it under Settings)", flush=True)


def ensure_first_admin(store: Any, tenant_id: str = "default") -> tuple[str, str] | None:
    """Create the first admin user when there is none: (username, password) once, else None."""
    from thoth.server.dashboard.users import ensure_first_admin as create

    return create(store.db, tenant_id)
