"""A test-only HTTP forwarder that adds `Authorization: Bearer TOKEN` to every request:

    python bearer_forwarder.py PORT TARGET_URL TOKEN

For clients that cannot send a header (the MCP conformance CLI), so they can reach the proxy,
which never serves without a token. Streams both ways; passes every other header as sent.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

PORT, TARGET, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10))
_HOP = {"host", "content-length", "connection", "transfer-encoding", "authorization"}


async def forward(request: Request) -> StreamingResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers["authorization"] = f"Bearer {TOKEN}"
    upstream = await client.send(client.build_request(request.method, TARGET, headers=headers,
                                                      content=await request.body()), stream=True)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in upstream.aiter_raw():
            yield chunk

    out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP | {"content-encoding"}}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=out,
                             background=BackgroundTask(upstream.aclose))


app = Starlette(routes=[Route("/mcp", forward, methods=["GET", "POST", "DELETE"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
