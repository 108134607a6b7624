"""Value-level operators on tool arguments: equals, in, glob, regex, domain, numeric, presence.

Tool arguments are attacker-controlled. Every operator is total: a value of the wrong type makes
the test false, never an exception, except a non-finite number (NaN, inf) given to a numeric
comparison, which raises PolicyEvaluationError so that the engine fails closed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fnmatch import translate
from typing import Any
from urllib.parse import urlsplit

from thoth.policy.errors import PolicyEvaluationError

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>", "__bool__": lambda self: False})()
MAX_TEXT = 100_000  # longer strings are judged on their first MAX_TEXT characters (regex cost)

Test = Callable[[Any], bool]


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def glob_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    return re.compile(translate(pattern), re.IGNORECASE if ignore_case else 0)


def name_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Exact names and globs (fnmatch, case-sensitive) -> fast membership test."""
    if "*" in patterns:
        return lambda name: isinstance(name, str)
    exact = frozenset(p for p in patterns if not is_glob(p))
    globs = [glob_regex(p) for p in patterns if is_glob(p)]
    if not globs:
        return exact.__contains__
    if not exact and len(globs) == 1:
        match = globs[0].match
        return lambda name: isinstance(name, str) and match(name) is not None
    return lambda name: isinstance(name, str) and (name in exact or any(g.match(name) for g in globs))


def to_number(value: Any) -> float | None:
    """A number from an int/float or a numeric string; None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            number = float(value.strip().replace("_", "x"))  # "1_000" is not a number here
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        raise PolicyEvaluationError(f"non-finite number {value!r}")
    return number


def as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


_EMAIL_HOST = re.compile(r"@([A-Za-z0-9.\-\[\]:]+)")


def domains_of(value: str) -> list[str]:
    """Host names in an e-mail address list ("a@x.com, B <b@y.org>") or a URL or a bare host."""
    text = value.strip()
    if "@" in text and "://" not in text:
        hosts = _EMAIL_HOST.findall(text)
    elif "://" in text or text.startswith("//"):
        try:
            hosts = [urlsplit(text).hostname or ""]
        except ValueError:
            hosts = [""]
    else:
        hosts = [text.split("/", 1)[0].split(":", 1)[0]]
    return [h.strip(".[]").lower() for h in hosts] or [""]


def in_domains(host: str, allowed: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in allowed)


def same_value(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or "1" with 1, but lets 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b
