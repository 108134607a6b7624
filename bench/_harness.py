"""Shared bits of the server benchmarks: start servers pinned to a core, run wrk, parse its output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks run as `python bench/x.py` from the repo root: bench/ is on sys.path, the root is not.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port  # noqa: E402
from tests.support.serve import SRC, start_serve  # noqa: E402

BARE_APP = """
import uvicorn
BODY = b'{"decision":"ALLOW","authorization_decision":"ALLOW","reason":"bare","risk_score":0.0}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def _pin(cmd: list[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def start_thoth(db_url: str, home: str, src: str = SRC, **env_extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`thoth serve` from the `src` tree (another checkout's src/ for an A/B run)."""
    Path(home).mkdir(parents=True, exist_ok=True)
    # A file, not a pipe: a pipe nobody reads blocks the server once full.
    log = open(Path(home) / "server.log", "ab")  # noqa: SIM115
    try:
        s = start_serve(db_url, Path(home), env=env_extra, drop_env=(), stdout=subprocess.DEVNULL, stderr=log,
                        prefix=_pin([], 0), pythonpath=src, timeout=15,
                        describe=lambda _: (Path(home) / "server.log").read_text(errors="replace")[-2000:])
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        log.close()
    return s.proc, s.url


def start_bare(script: str | None = None, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """The bare ASGI app, or another app `script` started as `python script PORT *args`."""
    port = free_port()
    cmd = [sys.executable, "-c", BARE_APP, str(port)] if script is None else [sys.executable, script, str(port), *args]
    proc = subprocess.Popen(_pin(cmd, 0), env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/", proc)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wrk(url: str, lua: str, connections: int, seconds: int) -> dict[str, float]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        # "@RUN@" in a script becomes a fresh id per run (LuaJIT's math.random is not seeded).
        fh.write(lua.replace("@RUN@", uuid.uuid4().hex[:12]))
    try:
        out = subprocess.run(_pin(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", fh.name, url],
                                  1), capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(fh.name)
    return parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": float(errors.group(1)) if errors else 0.0}


def lua_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
