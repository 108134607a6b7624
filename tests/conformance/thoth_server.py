"""Start our `thoth serve` for the conformance tests, from a Python other than the test's.

The published clients import as `thoth`, like our package, so the server cannot run in the
client's environment. This module uses only the standard library: the nox session (outer
Python) and the tests (client venv) can both load it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0

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
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no server log>"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.owns_home:
            shutil.rmtree(self.home, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path) -> dict[str, str]:
    """Environment for the server's Python: our sources first, a private THOTH_HOME, SQLite."""
    env = dict(os.environ)
    env["THOTH_HOME"] = str(home)
    # Our package from this checkout, whether or not it is installed in that Python.
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    database_url = os.environ.get("THOTH_CONFORMANCE_DATABASE_URL")
    if database_url:
        env["THOTH_DATABASE_URL"] = database_url
    else:
        env.pop("THOTH_DATABASE_URL", None)
    # Client settings of the outer environment must not leak into the server.
    for name in ("THOTH_API_URL", "THOTH_API_KEY"):
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


def _wait_healthy(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`thoth serve` exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"`thoth serve` did not answer {url}/healthz within {START_TIMEOUT_S:.0f}s")


def start_server(python: str, home: Path | None = None, tenant: str | None = None) -> RunningServer:
    """Run `python -m thoth serve` on a free loopback port and create an sdk and an approver key."""
    owns_home = home is None
    home = Path(tempfile.mkdtemp(prefix="thoth-conformance-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    tenant = tenant or f"conf-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python, "-m", "thoth", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    info = ServerInfo(url=url, tenant=tenant, sdk_key="", approver_key="")
    server = RunningServer(info=info, process=process, home=home, log_path=log_path, owns_home=owns_home)
    try:
        _wait_healthy(url, process, time.monotonic() + START_TIMEOUT_S)
        info.sdk_key = create_key(python, home, tenant, "sdk")
        info.approver_key = create_key(python, home, tenant, "approver")
    except Exception as exc:
        tail = server.log_tail()
        server.stop()
        raise RuntimeError(f"{exc}\n--- server log ---\n{tail}") from exc
    return server
