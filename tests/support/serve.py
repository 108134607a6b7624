"""Start a real `thoth serve` process, wait until /healthz answers 200, stop it.

Standard library only (subprocess, socket, urllib) so that helpers loaded by path inside nox
environments, where only the SDK or a published client is installed, can use it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (free until a server binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    url: str
    port: int
    home: Path
    db_url: str
    proc: subprocess.Popen[Any]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def _output(proc: subprocess.Popen[Any]) -> str:
    out, err = proc.communicate()
    parts = [p.decode(errors="replace") if isinstance(p, bytes) else p for p in (out, err) if p]
    return " ".join(parts)[-4000:]


def start_serve(db_url: str, home: Path, *, port: int | None = None, env: dict[str, str] | None = None,
                drop_env: Sequence[str] = ("THOTH_DATABASE_URL",), workers: int | None = None,
                args: Sequence[str] = (), stdout: int | IO[Any] | None = subprocess.PIPE,
                stderr: int | IO[Any] | None = subprocess.PIPE, timeout: float = 30.0,
                prefix: Sequence[str] = (), pythonpath: str = SRC, python: str = sys.executable,
                describe: Callable[[subprocess.Popen[Any]], str] = _output) -> Serve:
    """`python -m thoth serve` on `port` (or a free one) against `db_url`, THOTH_HOME=`home`;
    `env` adds variables, `drop_env` removes inherited ones, `prefix` wraps the command (taskset),
    `python` is the interpreter that runs the server.
    Returns once /healthz answers 200; raises RuntimeError (with `describe(proc)`) otherwise."""
    port = port or free_port()
    full_env = {**os.environ, "THOTH_HOME": str(home), "PYTHONPATH": pythonpath, **(env or {})}
    for name in drop_env:
        full_env.pop(name, None)
    cmd = [*prefix, python, "-m", "thoth", "serve", "--port", str(port), "--database-url", db_url]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen([*cmd, *args], env=full_env, stdout=stdout, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"thoth serve exited ({proc.returncode}): {describe(proc)}")
        if healthy(url):
            return Serve(url, port, home, db_url, proc)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"thoth serve did not start in {timeout:.0f} s: {describe(proc)}")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
