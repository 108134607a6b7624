"""A tool's result as bounded text, for the provenance index (docs/provenance.md).

The SDK runs the wrapped tool and sees what it returns: any Python object. `output_text` turns
it into at most `limit` characters of text without ever raising, without consuming what it
reads (a generator or an iterator is left untouched and recorded as its type only), without
following a reference cycle twice and without calling anything but `model_dump` of pydantic
models and the fields of dataclasses. What the tool returns to the agent is never changed: this
reads the object, it does not copy or convert it in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

OUTPUT_LIMIT = 32 * 1024  # characters of one output kept for the index
_MAX_DEPTH = 8


def output_text(result: Any, limit: int = OUTPUT_LIMIT) -> str:
    """Up to `limit` characters of text of `result`; "" when there is nothing to read."""
    kind = type(result)
    if kind is str:
        return result[:limit]
    if result is None:
        return ""
    if kind is bytes or kind is bytearray:
        return bytes(result[:limit]).decode("utf-8", errors="replace")
    parts: list[str] = []
    # A hostile __repr__ or model_dump must not break the tool call: keep what was read so far.
    with contextlib.suppress(Exception):
        _walk(result, parts, [limit], set(), 0)
    return " ".join(parts)[:limit]


def _walk(value: Any, parts: list[str], left: list[int], seen: set[int], depth: int) -> None:
    if left[0] <= 0:
        return
    if isinstance(value, str):
        _add(value, parts, left)
        return
    if value is None or isinstance(value, bool | int | float):
        _add(str(value), parts, left)
        return
    if isinstance(value, bytes | bytearray | memoryview):
        _add(bytes(value[: left[0]]).decode("utf-8", errors="replace"), parts, left)
        return
    if depth >= _MAX_DEPTH or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, Mapping):
        for key, item in list(value.items())[:10_000]:
            _add(str(key), parts, left)
            _walk(item, parts, left, seen, depth + 1)
        return
    if isinstance(value, list | tuple | set | frozenset):
        for item in list(value)[:10_000]:
            _walk(item, parts, left, seen, depth + 1)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name, None), parts, left, seen, depth + 1)
        return
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        _walk(dump(), parts, left, seen, depth + 1)
        return
    if hasattr(value, "__next__") or hasattr(value, "__anext__") or hasattr(value, "send"):
        return  # an iterator or generator: reading it would consume it
    text = getattr(value, "text", None) or getattr(value, "content", None)  # common result objects
    if isinstance(text, str | list | dict):
        _walk(text, parts, left, seen, depth + 1)
        return
    _add(object.__repr__(value) if type(value).__repr__ is object.__repr__ else repr(value), parts, left)


def _add(text: str, parts: list[str], left: list[int]) -> None:
    text = text[: left[0]]
    parts.append(text)
    left[0] -= len(text) + 1
