"""The proxy's settings, from the command line and an optional TOML or YAML file:

    [thoth]                      # who the calls are for, and where Thoth is
    agent_id = "desktop-agent"
    tenant_id = "acme"
    api_url = "http://127.0.0.1:8000"   # or "local"; the key comes from $THOTH_API_KEY
    scope = ["read_file", "search"]     # optional: other tools are hidden from tools/list
    enforcement = "progressive"

    [listen]                     # streamable HTTP (omit for stdio)
    address = "127.0.0.1:8765"
    tokens = [{env = "PROXY_TOKEN", agent_id = "desktop-agent"}]   # caller's token -> agent

    [[upstreams]]
    name = "files"
    command = ["python", "files_server.py"]          # stdio, or:
    # url = "https://tickets.example/mcp"
    # headers_env = {Authorization = "TICKETS_AUTH"}  # header -> environment variable

Secrets are named by environment variable, read at start, and never logged.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thoth.mcp_proxy.governance import Settings


class ConfigError(Exception):
    pass


@dataclass
class UpstreamSpec:
    name: str
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # resolved credentials: never logged

    def __repr__(self) -> str:  # never prints the credentials
        return f"UpstreamSpec(name={self.name!r}, command={self.command!r}, url={self.url!r})"


@dataclass
class ProxySettings:
    thoth: Settings
    upstreams: list[UpstreamSpec]
    listen: tuple[str, int] | None = None
    tokens: dict[str, str | None] = field(default_factory=dict)  # token -> agent id (None: the default)
    timeout: float = 300.0
    progress_interval: float = 5.0
    thoth_keys: bool = False  # HTTP callers may present their own Thoth API key instead of a token


def _read_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/mapping at the top")
    return data


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: environment variable {name} is not set")
    return value


def load(args: argparse.Namespace) -> ProxySettings:
    data = _read_file(args.config) if args.config else {}
    thoth = dict(data.get("thoth") or {})
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    agent = args.agent_id or thoth.get("agent_id")
    tenant = args.tenant_id or thoth.get("tenant_id")
    if not agent or not tenant:
        raise ConfigError("an agent id and a tenant id are needed (--agent-id/--tenant-id, $THOTH_AGENT_ID/"
                          "$THOTH_TENANT_ID, or [thoth] in --config)")
    scope = args.scope.split(",") if args.scope else list(thoth.get("scope") or [])
    api_key = os.environ.get(str(thoth["api_key_env"])) if thoth.get("api_key_env") else None
    settings = Settings(
        tenant_id=str(tenant), agent_id=str(agent),
        api_url=args.api_url or thoth.get("api_url"), api_key=api_key,
        approved_scope=[s.strip() for s in scope if s.strip()],
        enforcement=args.enforcement or thoth.get("enforcement") or "progressive",
    )
    upstreams = [_upstream(u) for u in data.get("upstreams") or []]
    if command:
        upstreams.insert(0, UpstreamSpec(args.name or Path(command[-1]).stem or command[0], command=command))
    elif args.upstream:
        upstreams.insert(0, UpstreamSpec(args.name or _url_name(args.upstream), url=args.upstream))
    if not upstreams:
        raise ConfigError("nothing to proxy: give -- COMMAND ARGS, --upstream URL, or [[upstreams]] in --config")
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError(f"upstream names must be unique: {names}")
    listen_cfg = dict(data.get("listen") or {})
    address = args.listen or listen_cfg.get("address")
    listen = _address(address) if address else None
    tokens: dict[str, str | None] = {}
    for name in args.token_env:
        tokens[_env(name, "--token-env")] = None
    for entry in listen_cfg.get("tokens") or []:
        tokens[_env(str(entry["env"]), "[listen] tokens")] = entry.get("agent_id")
    if len(upstreams) > 1:
        if address or any(u.command is None for u in upstreams):
            raise ConfigError("several upstreams in one proxy: stdio servers (command) only, for now; "
                              "run one HTTP proxy per URL")
        dotted = [u.name for u in upstreams if "." in u.name]
        if dotted:
            raise ConfigError(f"upstream names may not contain '.' (tools are exposed as <server>.<tool>): {dotted}")
    return ProxySettings(
        settings, upstreams, listen, tokens,
        timeout=args.timeout or float(data.get("timeout", 300.0)),
        progress_interval=args.progress_interval or float(data.get("progress_interval", 5.0)),
        thoth_keys=bool(args.thoth_keys or listen_cfg.get("thoth_keys")),
    )


def _upstream(entry: Any) -> UpstreamSpec:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ConfigError("each [[upstreams]] entry needs a name")
    name = str(entry["name"])
    if bool(entry.get("command")) == bool(entry.get("url")):
        raise ConfigError(f"upstream {name}: give either command or url")
    env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
    for key, var in (entry.get("env_from") or {}).items():
        env[str(key)] = _env(str(var), f"upstream {name}")
    headers = {str(h): _env(str(var), f"upstream {name}") for h, var in (entry.get("headers_env") or {}).items()}
    command = entry.get("command")
    if isinstance(command, str):
        command = command.split()
    return UpstreamSpec(name, command=list(command) if command else None, url=entry.get("url"), env=env,
                        headers=headers)


def _url_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or "upstream"


def _address(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"--listen wants HOST:PORT, not {text!r}") from None
