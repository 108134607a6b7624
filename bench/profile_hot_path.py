"""CPU cost per request of the hot path in process: no HTTP server, no load generator.

usage: PYTHONPATH=src python bench/profile_hot_path.py [enforce|events] [--requests 20000]
           [--analytics on|off] [--postgres URL] [--profile] [--time-score]
Calls the ASGI app directly (64 requests in flight, like wrk -c64) with the bench requests of
bench_enforce.py / bench_ingest.py and prints CPU microseconds per request (process time, so
other load on a shared machine distorts it little). --profile prints the cProfile top functions
(SORT=cumulative to sort by inclusive time). --time-score also prints the anomaly score's own
time per decision inside the server (issue 8's goal: <= 20 us p50).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_enforce import POLICY_FILE, SESSION_LENGTH, request_body, session_calls  # noqa: E402
from bench_ingest import BATCH, event_template  # noqa: E402

from thoth.analytics.store import StoredAnalytics  # noqa: E402
from thoth.server.app import create_app  # noqa: E402
from thoth.server.settings import Settings  # noqa: E402


def bodies(route: str, n: int) -> list[bytes]:
    run = uuid.uuid4().hex[:8]
    if route == "enforce":
        template = request_body()
        return [orjson.dumps({**template, "session_id": f"prof-{run}-{i // SESSION_LENGTH}",
                              "session_tool_calls": session_calls(i % SESSION_LENGTH)}) for i in range(n)]
    text = event_template()
    return [("[" + ",".join(text.replace("@ID@", f"{run}-{i}-{j}").replace("@SESSION@", str(i % 200))
                            for j in range(BATCH)) + "]").encode() for i in range(n)]


async def run(app: object, key: str, route: str, n: int, in_flight: int) -> tuple[float, float]:
    path = "/v1/enforce" if route == "enforce" else "/v1/events/batch"
    headers = [(b"content-type", b"application/json"), (b"x-api-key", key.encode())]
    payloads = bodies(route, n)

    async def one(body: bytes) -> None:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise SystemExit(f"status {message['status']}")

        scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
        await app(scope, receive, send)  # type: ignore[operator]

    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, in_flight):
        await asyncio.gather(*(one(b) for b in payloads[i:i + in_flight]))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("route", nargs="?", default="enforce", choices=("enforce", "events"))
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--analytics", default="on")
    ap.add_argument("--postgres", default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--time-score", action="store_true",
                    help="also print the anomaly score's own time per decision inside the server (issue 8)")
    args = ap.parse_args()
    os.environ["THOTH_ANALYTICS"] = args.analytics
    home = tempfile.mkdtemp(prefix="thoth-prof-")
    settings = Settings(database_url=args.postgres or f"sqlite:///{home}/thoth.db", home=Path(home))
    app = create_app(settings)
    tenant = "bench"  # the bench requests name this tenant
    key = app.core.store.create_key(tenant, "sdk")["key"]
    app.core.store.add_policy_version(tenant, POLICY_FILE.read_text(), "bench")

    score_ns: list[int] = []
    if args.time_score:
        score = StoredAnalytics.score

        def timed_score(self: StoredAnalytics, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return score(self, *a, **kw)
            finally:
                score_ns.append(time.perf_counter_ns() - t0)

        StoredAnalytics.score = timed_score  # type: ignore[method-assign]

    async def go() -> None:
        await run(app, key, args.route, 2000, args.in_flight)  # warm-up
        score_ns.clear()
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        wall, cpu = await run(app, key, args.route, args.requests, args.in_flight)
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(35)
        per = BATCH if args.route == "events" else 1
        print(f"{args.route}: {cpu / args.requests * 1e6:.1f} us CPU per request, {wall / args.requests * 1e6:.1f} us"
              f" wall ({args.requests * per / wall:,.0f} {'events' if per > 1 else 'requests'}/s in process);"
              f" analytics {args.analytics}; {settings.database_url.split(':')[0]}")
        if score_ns:
            ns = sorted(score_ns)
            print(f"anomaly score inside the server: p50 {ns[len(ns) // 2] / 1000:.1f} us, "
                  f"p99 {ns[int(len(ns) * 0.99)] / 1000:.1f} us ({len(ns)} decisions)")
        app.core.stop()

    uvloop.run(go())


if __name__ == "__main__":
    main()
