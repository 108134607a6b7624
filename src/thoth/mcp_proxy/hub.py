"""Several upstream servers behind one stdio proxy: one MCP server for the client, made of many.

Each upstream keeps its own Relay (governance with its own `mcp_server` name, filtered
tools/list, timeouts, restarts); the hub sits between the client and those relays and only
routes and merges:

- `initialize`, `notifications/initialized`, `logging/setLevel` go to every upstream; the
  client gets one answer (capabilities merged, each server's instructions under its name);
- `tools/list` and `prompts/list` are merged with names mapped to `<server>.<name>` so they stay
  unique (the server names are the configured ones; ADR 0414); `tools/call` and `prompts/get`
  are routed back by that map and reach the server under the tool's own name;
- `resources/list` and `resources/templates/list` are merged as they are (a URI is already
  unique) and `resources/read`/`subscribe`/`unsubscribe` go to the server that listed the URI;
- requests an upstream sends (sampling, elicitation, roots, ping) reach the client under an id of
  the hub's, and the client's answer goes back to that upstream only.

Lists are read one page per server (a `nextCursor` is not followed yet).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from thoth.mcp_proxy import jsonrpc
from thoth.mcp_proxy.relay import Relay, Send

_FAN_OUT = {"initialize", "logging/setLevel", "tools/list", "prompts/list", "resources/list",
            "resources/templates/list"}
_BY_URI = {"resources/read", "resources/subscribe", "resources/unsubscribe"}
SEPARATOR = "."


@dataclass
class _Fanout:
    client_id: Any
    method: str
    waiting: set[str]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


class Hub:
    def __init__(self, to_client: Send) -> None:
        self.to_client = to_client
        self.relays: dict[str, Relay] = {}
        self._ids = itertools.count(1)
        self._routes: dict[Any, tuple[str, Any] | _Fanout] = {}  # hub id -> (server, client id) | fan-out
        self._server_requests: dict[str, tuple[str, Any]] = {}  # hub id -> (server, the upstream's id)
        self._tools: dict[str, tuple[str, str]] = {}  # exposed name -> (server, tool)
        self._prompts: dict[str, tuple[str, str]] = {}
        self._uris: dict[str, str] = {}  # resource URI -> server

    def sink(self, server: str) -> Send:
        """The to_client of `server`'s relay: what it sends to the client comes here first."""

        async def send(message: dict[str, Any]) -> None:
            await self._from_relay(server, message)

        return send

    # ---- client -> relays -------------------------------------------------------------------------
    async def from_client(self, raw: bytes | str) -> None:
        try:
            message = jsonrpc.parse(raw)
        except jsonrpc.BadMessage as exc:
            await self.to_client(exc.error)
            return
        method, msg_id = message.get("method"), message.get("id")
        if method is None:  # the client's answer to a server's request
            route = self._server_requests.pop(str(msg_id), None)
            if route is not None:
                server, original = route
                await self.relays[server].handle_client({**message, "id": original})
            return
        if msg_id is None:
            await self._notification(message)
            return
        if method == "ping":
            await self.to_client({"jsonrpc": "2.0", "id": msg_id, "result": {}})
        elif method in _FAN_OUT:
            await self._fan_out(message)
        elif method in ("tools/call", "prompts/get"):
            await self._routed_by_name(message, self._tools if method == "tools/call" else self._prompts)
        elif method in _BY_URI:
            params = message.get("params")
            uri = params.get("uri") if isinstance(params, dict) else None
            owner = self._uris.get(uri) if isinstance(uri, str) else None
            await self._to_one(owner, message, message)
        elif method == "completion/complete":
            await self._completion(message)
        else:
            await self.to_client(jsonrpc.error(msg_id, jsonrpc.METHOD_NOT_FOUND,
                                               f"{method} is not routed by a proxy of several servers"))

    async def _notification(self, message: dict[str, Any]) -> None:
        if message.get("method") == "notifications/cancelled":
            params = message.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            for hub_id, route in list(self._routes.items()):
                if isinstance(route, tuple) and route[1] == request_id:
                    cancel = {**message, "params": {**(params or {}), "requestId": hub_id}}
                    await self.relays[route[0]].handle_client(cancel)
            return
        for relay in self.relays.values():  # initialized, roots/list_changed, progress...: to every server
            await relay.handle_client(message)

    async def _fan_out(self, message: dict[str, Any]) -> None:
        fan = _Fanout(message["id"], message["method"], set(self.relays))
        for relay in self.relays.values():
            hub_id = f"hub-{next(self._ids)}"
            self._routes[hub_id] = fan
            await relay.handle_client({**message, "id": hub_id})

    async def _routed_by_name(self, message: dict[str, Any], names: dict[str, tuple[str, str]]) -> None:
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        target = names.get(name) if isinstance(name, str) else None
        if target is None and isinstance(name, str):  # not listed yet: "<server>.<name>" of a known server
            server, sep, own = name.partition(SEPARATOR)
            target = (server, own) if sep and own and server in self.relays else None
        if target is None or not isinstance(params, dict):
            await self.to_client(jsonrpc.error(message["id"], jsonrpc.INVALID_PARAMS,
                                               f"unknown name {name!r}: names here are <server>{SEPARATOR}<name>"))
            return
        server, own = target
        await self._to_one(server, message, {**message, "params": {**params, "name": own}})

    async def _completion(self, message: dict[str, Any]) -> None:
        params = message.get("params")
        ref = params.get("ref") if isinstance(params, dict) else None
        server = None
        if isinstance(ref, dict) and isinstance(params, dict):
            if ref.get("type") == "ref/prompt" and ref.get("name") in self._prompts:
                server, own = self._prompts[ref["name"]]
                message = {**message, "params": {**params, "ref": {**ref, "name": own}}}
            elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                server = self._uris.get(ref["uri"])
        await self._to_one(server, message, message)

    async def _to_one(self, server: str | None, original: dict[str, Any], message: dict[str, Any]) -> None:
        if server is None or server not in self.relays:
            await self.to_client(jsonrpc.error(original["id"], jsonrpc.INVALID_PARAMS,
                                               "no server of this proxy offers that (list it first)"))
            return
        hub_id = f"hub-{next(self._ids)}"
        self._routes[hub_id] = (server, original["id"])
        await self.relays[server].handle_client({**message, "id": hub_id})

    # ---- relays -> client -------------------------------------------------------------------------
    async def _from_relay(self, server: str, message: dict[str, Any]) -> None:
        if jsonrpc.is_response(message):
            route = self._routes.pop(message.get("id"), None)
            if route is None:
                return
            if isinstance(route, tuple):
                await self.to_client({**message, "id": route[1]})
                return
            route.answers[server] = message
            route.waiting.discard(server)
            if not route.waiting:
                await self.to_client(self._merged(route))
            return
        if jsonrpc.is_request(message):  # the server asks the client (sampling, elicitation, roots)
            hub_id = f"{server}:{next(self._ids)}"
            self._server_requests[hub_id] = (server, message["id"])
            await self.to_client({**message, "id": hub_id})
            return
        await self.to_client(message)

    def _merged(self, fan: _Fanout) -> dict[str, Any]:
        results = {s: a["result"] for s, a in sorted(fan.answers.items()) if isinstance(a.get("result"), dict)}
        if not results:
            first = next(iter(fan.answers.values()))
            return {**first, "id": fan.client_id}
        merged: dict[str, Any]
        if fan.method == "initialize":
            merged = _merge_initialize(results)
        elif fan.method == "tools/list":
            merged = {"tools": self._renamed(results, "tools", self._tools)}
        elif fan.method == "prompts/list":
            merged = {"prompts": self._renamed(results, "prompts", self._prompts)}
        elif fan.method in ("resources/list", "resources/templates/list"):
            key = "resources" if fan.method == "resources/list" else "resourceTemplates"
            items = []
            for server, result in results.items():
                for item in result.get(key) or []:
                    if isinstance(item, dict):
                        uri = item.get("uri") or item.get("uriTemplate")
                        if isinstance(uri, str):
                            self._uris.setdefault(uri, server)
                        items.append(item)
            merged = {key: items}
        else:
            merged = {}
        return {"jsonrpc": "2.0", "id": fan.client_id, "result": merged}

    @staticmethod
    def _renamed(results: dict[str, dict[str, Any]], key: str, names: dict[str, tuple[str, str]]) -> list[Any]:
        out = []
        for server, result in results.items():
            for item in result.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    exposed = f"{server}{SEPARATOR}{item['name']}"
                    names[exposed] = (server, item["name"])
                    out.append({**item, "name": exposed})
        return out

    async def close(self) -> None:
        await asyncio.gather(*(relay.close() for relay in self.relays.values()))


def _merge_initialize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    capabilities: dict[str, Any] = {}
    for result in results.values():
        for name, value in (result.get("capabilities") or {}).items():
            mine = capabilities.get(name)
            capabilities[name] = {**mine, **value} if isinstance(mine, dict) and isinstance(value, dict) else value
    versions = {r.get("protocolVersion") for r in results.values()}
    first = next(iter(results.values()))
    instructions = "\n\n".join(f"[{s}] {r['instructions']}" for s, r in results.items() if r.get("instructions"))
    merged: dict[str, Any] = {
        # Servers that agreed on different versions: the oldest one is what all of them speak.
        "protocolVersion": first.get("protocolVersion") if len(versions) == 1 else min(v for v in versions if v),
        "capabilities": capabilities,
        "serverInfo": {"name": "thoth-mcp-proxy", "version": "1", "title": "Thoth: " + ", ".join(results)},
    }
    if instructions:
        merged["instructions"] = instructions
    return merged
