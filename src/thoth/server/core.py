"""The server process's state: store, writer, caches (keys, policies, session histories, dedup),
metrics, the analytics engines and the notification hooks.

The decisions are modules of their own, each read top to bottom: thoth.server.enforce (one
enforce call), thoth.server.holds (hold long-polls, approvals, hooks) and thoth.server.ingest
(event batches); `Core.enforce`, `Core.hold`, `Core.resolve_approval` and `Core.ingest` are those
functions bound as methods. HTTP glue lives in dataplane.py / controlplane.py; nothing here knows
HTTP except the `ClientError` (thoth.wire.WireError) raised for bad input (a 4xx with a JSON
`message`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from thoth.server import analytics_state, engine, holds, journal, migrate
from thoth.server import enforce as enforce_path
from thoth.server import ingest as ingest_path
from thoth.server.audit import Signer
from thoth.server.db import RETRY_SECONDS, Database, StorageUnavailable, is_unavailable
from thoth.server.enforce import (  # noqa: F401  (re-exported)
    APPROVAL_USES,
    APPROVAL_VALID_SECONDS,
    VIOLATION_DECISIONS,
    args_digest,
)
from thoth.server.holds import MAX_HOLD_WAIT, public_approval, resolution_problem  # noqa: F401  (re-exported)
from thoth.server.mcp_pins import McpPins, require_pinning_setting
from thoth.server.metrics import Metrics
from thoth.server.settings import Settings
from thoth.server.store import KeyInfo, Store, iso
from thoth.server.writer import InlineWriter, Writer
from thoth.wire import (  # noqa: F401  (re-exported: dataplane and tests import them from here)
    DEPTH_MESSAGE,
    ENFORCE_FIELDS,
    EVENT_FIELDS,
    EVENT_SERVER_FIELDS,
    MAX_EVENTS_PER_BATCH,
    MAX_JSON_DEPTH,
    MODES,
    RESERVED_EVENT_PREFIX,
    RESERVED_SOURCE_PREFIX,
    WireError,
    decision_envelope,
    deeper_than,
    hold_answer,
    normalize_keys,
    parse_enforce,
    parse_event,
    server_fields,
    spent_reason,
)

DATA_PLANE_ROLES = frozenset({"sdk", "approver", "admin"})
INGEST_ROLES = DATA_PLANE_ROLES | {"ingest"}
READ_ROLES = frozenset({"viewer", "approver", "admin"})
RESOLVE_ROLES = frozenset({"approver", "admin"})
# How long a request waits for the re-read of an expired key or policy before it serves the expired
# entry (the database is silent); a healthy database answers in a round trip.
REFRESH_WAIT = 0.5
log = logging.getLogger("thoth.server")


# The wire contract (fields, types, limits, the envelope) lives in thoth.wire; the names are
# kept here for the modules that import them from core.
ClientError = WireError


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class Core:
    """Everything one server process holds: store, writer, caches, metrics, hooks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        migrate.upgrade(settings.database_url)
        self.db = Database(settings.database_url, timeout=settings.db_timeout_seconds,
                           statement_timeout=settings.db_statement_timeout_seconds)
        self.signer = Signer(settings.key_path)
        self.store = Store(self.db, self.signer)
        self.writer: Writer | InlineWriter = (
            Writer(self.db, self.store) if self.db.postgres else InlineWriter(self.db, self.store))
        self.metrics = Metrics()
        # MCP tool pins: written at list time (POST /v1/mcp/tools), read from a per-tenant cache
        # on the enforce path of a call that names its mcp_server.
        self.mcp_pins = McpPins(self.db, settings.cache_ttl, require_pinning_setting(settings.mcp_require_pinning))
        self._keys: dict[str, tuple[float, KeyInfo | None]] = {}
        self._policies: dict[str, tuple[float, Any, int | None]] = {}
        # Bumped when a key is revoked or a policy pushed here: a look-up that began before is
        # not cached (it may have read the old row), and requests after it do not share it.
        self._cache_gen = 0
        self.histories: _LRU = _LRU(20_000)
        self.dedup: _LRU = _LRU(100_000)
        self._reads: dict[Any, asyncio.Future[Any]] = {}
        self.in_flight: dict[tuple[str, str], int] = {}  # (tenant, session) -> enforce calls being decided
        self.hold_events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None
        # One analytics engine per tenant, in memory (per process; see docs/server.md).
        self._analytics: dict[str, Any] = {}
        # Hooks for notifications (Slack, webhooks): called with the approval dict.
        self.hold_created_hooks: list[Callable[[dict[str, Any]], Any]] = []
        self.hold_resolved_hooks: list[Callable[[dict[str, Any]], Any]] = []
        # (tenant_id, tool_name) -> approvals a hold needs; thoth.server.notify sets the two-person rule.
        self.required_approvals: Callable[[str, str], int] = lambda tenant_id, tool_name: 1

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Decisions a killed server answered but never committed (thoth.server.journal).
        journal.replay(self.settings.home / "journal", self.store, self.db)
        self.writer.journal = journal.Journal(self.settings.home / "journal")
        self.writer.start()
        self._flusher = self._loop.create_task(self._flush_analytics_forever())

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self.flush_analytics()
        self.writer.stop()
        if self.writer.journal is not None:
            self.writer.journal.close()
            self.writer.journal = None
        self.db.close()

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store read: inline on SQLite (microseconds), in a thread on PostgreSQL (a round trip).
        A database that cannot answer raises StorageUnavailable (503)."""
        try:
            if self.db.postgres:
                with self.db.request_bound():  # a client waits: the short bound, not a report's
                    return await asyncio.to_thread(fn, *args)
            return fn(*args)
        except StorageUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable("the database is unavailable; retry shortly") from exc
            raise

    async def read_once(self, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """`read`, shared by concurrent requests that need the same thing (the calls of a session
        arriving together): one query instead of one each, and one answer for all of them."""
        if not self.db.postgres:
            return await self.read(fn, *args)
        pending = self._reads.get(key)
        if pending is None:
            pending = self._reads[key] = asyncio.ensure_future(self.read(fn, *args))
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(pending)  # a cancelled request must not cancel the others' read

    async def _refresh(self, what: tuple[str, str], cache: dict[str, Any], fn: Callable[[str], Any]) -> Any:
        """Re-read an expired cache entry off the loop. The request waits for it (a round trip),
        so a revoked key or a pushed policy does not serve past cache_ttl; when the database cannot
        answer (refused at once, or silent past REFRESH_WAIT: a partition), the expired entry goes
        on serving and only an entry never seen waits for the read, or is a 503."""
        name = what[1]
        entry = cache.get(name)
        known = entry is not None and entry[1] is not None  # an unknown key may exist by now: wait
        try:
            read = self.read_once(what, fn, name)  # shielded: a wait cut short leaves the read running
            return await (asyncio.wait_for(read, REFRESH_WAIT) if known else read)
        except (StorageUnavailable, TimeoutError):
            entry = cache.get(name)
            if not known or entry is None:
                raise StorageUnavailable("the database is unavailable; retry shortly") from None
            cache[name] = (time.monotonic() + RETRY_SECONDS, *entry[1:])
            return entry[1] if len(entry) == 2 else tuple(entry[1:])

    @staticmethod
    def _stale(cache: dict[str, Any], name: str, exc: Exception) -> Any:
        """The expired entry, when the refresh failed for want of the database; else the error."""
        if not is_unavailable(exc):
            raise exc
        entry = cache.get(name)
        if entry is None:
            raise StorageUnavailable("the database is unavailable; retry shortly") from exc
        cache[name] = (time.monotonic() + RETRY_SECONDS, *entry[1:])
        return entry

    # ---- auth -------------------------------------------------------------------------
    # Keys and policies are cached for cache_ttl seconds. An expired entry is refreshed; when the
    # database cannot answer, the expired entry goes on serving (a tenant keeps its decisions
    # through an outage) and only a key never seen answers 503.

    async def authorize(self, key: str | None, roles: frozenset[str]) -> KeyInfo:
        """`authenticate` for the event loop (the data plane). On PostgreSQL the look-up runs in
        a thread; an expired entry serves on only while the database cannot answer."""
        if not key:
            raise ClientError(401, "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'")
        cached = self._keys.get(key)
        if cached is not None and cached[0] >= time.monotonic():
            return _allowed(cached[1], roles)
        if not self.db.postgres:  # SQLite: microseconds, inline
            return self.authenticate(key, roles)
        return _allowed(await self._refresh(("key", key), self._keys, self._load_key), roles)

    def authenticate(self, key: str | None, roles: frozenset[str]) -> KeyInfo:
        """The caller's key, blocking on a refresh (SQLite inline, control-plane threads)."""
        if not key:
            raise ClientError(401, "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'")
        cached = self._keys.get(key)
        if cached is not None and cached[0] >= time.monotonic():
            return _allowed(cached[1], roles)
        try:
            info = self._load_key(key)
        except Exception as exc:
            info = self._stale(self._keys, key, exc)[1]
        return _allowed(info, roles)

    def _load_key(self, key: str) -> KeyInfo | None:
        gen = self._cache_gen
        info = self.store.lookup_key(key)
        if gen == self._cache_gen:
            self._keys[key] = (time.monotonic() + self.settings.cache_ttl, info)
            if len(self._keys) > 10_000:
                self._keys.clear()
        return info

    def forget_key_cache(self) -> None:
        self._cache_gen += 1
        self._keys.clear()
        for what in [w for w in list(self._reads) if w[0] == "key"]:
            self._reads.pop(what, None)

    # ---- policy -----------------------------------------------------------------------

    async def policy(self, tenant_id: str) -> tuple[Any, int | None]:
        """`policy_for` for the event loop: like `authorize`, off the loop on PostgreSQL."""
        cached = self._policies.get(tenant_id)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1], cached[2]
        if not self.db.postgres:
            return self.policy_for(tenant_id)
        result: tuple[Any, int | None] = await self._refresh(("policy", tenant_id), self._policies,
                                                             self._load_policy)
        return result

    def policy_for(self, tenant_id: str) -> tuple[Any, int | None]:
        cached = self._policies.get(tenant_id)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1], cached[2]
        try:
            return self._load_policy(tenant_id)
        except Exception as exc:
            entry = self._stale(self._policies, tenant_id, exc)
            return entry[1], entry[2]

    def _load_policy(self, tenant_id: str) -> tuple[Any, int | None]:
        gen = self._cache_gen
        cached = self._policies.get(tenant_id)
        active = self.store.active_policy(tenant_id)
        if cached is not None and active is not None and cached[2] == active["version"]:
            policy, version = cached[1], cached[2]
        elif active is None:
            policy, version = engine.default_policy(), None
        else:
            try:
                policy, version = engine.compile_policy(active["document"]), active["version"]
            except Exception:  # a stored document no longer compiles: fall back, never 500
                policy, version = engine.default_policy(), None
        if gen == self._cache_gen:
            self._policies[tenant_id] = (time.monotonic() + self.settings.cache_ttl, policy, version)
        return policy, version

    def forget_policy(self, tenant_id: str) -> None:
        self._cache_gen += 1
        self._policies.pop(tenant_id, None)
        self._reads.pop(("policy", tenant_id), None)

    # ---- enforce ----------------------------------------------------------------------

    # One module per decision path, each read top to bottom; bound here as methods (no extra call).
    enforce = enforce_path.enforce

    def analytics(self, tenant_id: str) -> Any:
        if not self.settings.analytics:
            return None
        found = self._analytics.get(tenant_id)
        if found is None:
            # Baselines live in the database, shared by every process (analytics_state.py).
            found = self._analytics[tenant_id] = analytics_state.stored_engine(self.db, tenant_id)
        return found

    def flush_analytics(self) -> None:
        for stored in list(self._analytics.values()):
            try:
                stored.flush()
            except Exception as exc:  # advisory state: a failed sync is retried by the next flush
                if is_unavailable(exc):  # an outage: said once by thoth.server.db, not every flush
                    log.debug("analytics flush skipped: %s", exc)
                else:
                    log.warning("analytics flush failed", exc_info=True)

    async def _flush_analytics_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.analytics_flush_seconds)
            self.flush_analytics()

    # ---- holds and approvals -------------------------------------------------------------

    hold_answer = staticmethod(hold_answer)  # the one builder lives in thoth.wire
    hold = holds.hold
    resolve_approval = holds.resolve_approval
    learn_approved = holds.learn_approved

    def on_hold_created(self, hook: Callable[[dict[str, Any]], Any]) -> None:
        self.hold_created_hooks.append(hook)

    def on_hold_resolved(self, hook: Callable[[dict[str, Any]], Any]) -> None:
        self.hold_resolved_hooks.append(hook)

    # ---- ingest -------------------------------------------------------------------------

    ingest = ingest_path.ingest

    # ---- audit ----------------------------------------------------------------------------

    def verify(self, tenant_id: str) -> dict[str, Any]:
        return self.store.verify_chain(tenant_id)


def _allowed(info: KeyInfo | None, roles: frozenset[str]) -> KeyInfo:
    if info is None or info.revoked:
        raise ClientError(401, "invalid or revoked API key")
    if info.role not in roles:
        raise ClientError(403, f"a key with role '{info.role}' may not do this")
    return info


__all__ = ["Core", "ClientError", "iso", "public_approval"]
