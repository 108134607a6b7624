"""Jinja2 environment: autoescaping on for every template, formatting filters.

Everything an agent sent (tool names, arguments, results, ids) reaches templates as data and is
escaped on output; no filter here returns Markup built from such data.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader
from starlette.responses import HTMLResponse

_TEMPLATES = Path(__file__).parent / "templates"


def ts(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


def ago(value: Any) -> str:
    try:
        delta = time.time() - float(value)
    except (TypeError, ValueError):
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(delta) >= size:
            return f"{int(delta // size)}{unit} ago"
    return "just now" if delta >= 0 else "in the future"


def until(value: Any) -> str:
    try:
        delta = float(value) - time.time()
    except (TypeError, ValueError):
        return "—"
    if delta <= 0:
        return "expired"
    return f"{int(delta // 60)}m {int(delta % 60)}s" if delta >= 60 else f"{int(delta)}s"


def pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
    except TypeError:
        return repr(value)


def compact(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode() if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size(value: Any) -> str:
    if value is None:
        return "—"
    n = float(value)
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def score(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "—"


def number(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "—"


env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True,
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(ts=ts, ago=ago, until=until, pretty=pretty, compact=compact, size=size, score=score,
                   number=number)

SECURITY_HEADERS = {
    # No inline script anywhere: data for charts travels in <script type="application/json">.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
                               " img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self';"
                               " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    html = env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
