"""Start our `thoth serve` for the conformance tests, from a Python other than the test's.

The published clients import as `thoth`, like our package, so the server cannot run in the
client's environment. This module uses only the standard library: the nox session (outer
Python) and the tests (client venv) can both load it. The server is started the one way tests
start it, tests/support/serve.py (stdlib only too), loaded here by path: the client venv's
`sys.path` holds neither our sources nor the repository root, and a published wheel could bring
a `tests` package of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def _support_serve() -> ModuleType:
    name = "thoth_tests_support_serve"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "support" / "serve.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


serve = _support_serve()

# What the tests read; set these to point the tests at a server started elsewhere.
ENV_URL = "THOTH_CONFORMANCE_URL"
ENV_TENANT = "THOTH_CONFORMANCE_TENANT"
ENV_SDK_KEY = "THOTH_CONFORMANCE_SDK_KEY"
ENV_APPROVER_KEY = "THOTH_CONFORMANCE_APPROVER_KEY"


@dataclass
class ServerInfo:
    url: str
    tenant: str
    sdk_key: str
    approver_key: str

    def env(self) -> dict[str, str]:
        return {
            ENV_URL: self.url,
            ENV_TENANT: self.tenant,
            ENV_SDK_KEY: self.sdk_key,
            ENV_APPROVER_KEY: self.approver_key,
        }

    @classmethod
    def from_env(cls) -> ServerInfo | None:
        values = [os.environ.get(name, "") for name in (ENV_URL, ENV_TENANT, ENV_SDK_KEY, ENV_APPROVER_KEY)]
        if not all(values):
            return None
        return cls(values[0].rstrip("/"), *values[1:])


@dataclass
class RunningServer:
    info: ServerInfo
    process: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    owns_home: bool = field(default=True)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            serve.stop_process(self.process)
            self.process.wait(timeout=5)
        if self.owns_home:
            shutil.rmtree(self.home, ignore_errors=True)


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no server log>"


def database_url(home: Path) -> str:
    """THOTH_CONFORMANCE_DATABASE_URL, or SQLite in the server's private THOTH_HOME."""
    return os.environ.get("THOTH_CONFORMANCE_DATABASE_URL") or f"sqlite:///{home / 'thoth.db'}"


# Client settings of the outer environment must not leak into the server.
_CLIENT_ENV = ("THOTH_API_URL", "THOTH_API_KEY")


def server_env(home: Path) -> dict[str, str]:
    """Environment for the server's Python (the CLI): our sources first, a private THOTH_HOME."""
    env = {**os.environ, "THOTH_HOME": str(home), "THOTH_DATABASE_URL": database_url(home),
           # Our package from this checkout, whether or not it is installed in that Python.
           "PYTHONPATH": serve.SRC}
    for name in _CLIENT_ENV:
        env.pop(name, None)
    return env


def serve_problem(python: str) -> str | None:
    """Why `python` cannot run our server (an import error), or None when it can."""
    probe = "import thoth.server.app, uvicorn, sqlalchemy"
    try:
        result = subprocess.run(
            [python, "-c", probe],
            env=server_env(Path(tempfile.gettempdir())),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _parse_json_output(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # Tolerate log lines around the JSON document.
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < start:
            raise
        value = json.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text!r}")
    return value


def create_key(python: str, home: Path, tenant: str, role: str) -> str:
    result = subprocess.run(
        [python, "-m", "thoth", "keys", "create", "--tenant", tenant, "--role", role, "--json"],
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`thoth keys create --role {role}` failed ({result.returncode}): {result.stderr.strip()}")
    payload = _parse_json_output(result.stdout)
    key = payload.get("key")
    if not isinstance(key, str) or not key:
        raise RuntimeError(f"`thoth keys create` printed no key: {result.stdout!r}")
    return key


def start_server(python: str, home: Path | None = None, tenant: str | None = None) -> RunningServer:
    """Run `python -m thoth serve` on a free loopback port and create an sdk and an approver key."""
    owns_home = home is None
    home = Path(tempfile.mkdtemp(prefix="thoth-conformance-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    tenant = tenant or f"conf-{uuid.uuid4().hex[:8]}"
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        try:
            started = serve.start_serve(database_url(home), home, drop_env=_CLIENT_ENV, stdout=log,
                                        stderr=subprocess.STDOUT, timeout=START_TIMEOUT_S, python=python,
                                        args=("--host", "127.0.0.1"), describe=lambda _: _tail(log_path))
        except RuntimeError:
            if owns_home:
                shutil.rmtree(home, ignore_errors=True)
            raise
    info = ServerInfo(url=started.url, tenant=tenant, sdk_key="", approver_key="")
    server = RunningServer(info=info, process=started.proc, home=home, log_path=log_path, owns_home=owns_home)
    try:
        info.sdk_key = create_key(python, home, tenant, "sdk")
        info.approver_key = create_key(python, home, tenant, "approver")
    except Exception as exc:
        tail = server.log_tail()
        server.stop()
        raise RuntimeError(f"{exc}\n--- server log ---\n{tail}") from exc
    return server
