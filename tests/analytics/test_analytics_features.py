"""Feature extraction: the fast searches find what the plain rules define, on any text, in
bounded time."""

from __future__ import annotations

import random
import re
import time

from thoth.analytics import extract
from thoth.analytics.features import MAX_LEAVES, _path_prefix

# The definitions, as plain patterns: an address is up to 64 local characters and a domain,
# searched left to right (the next search starts after the previous address); a URL host
# follows a scheme of a letter and up to 15 more characters.
EMAIL = re.compile(r"[\w.+-]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://(?:[^/\s@]*@)?([A-Za-z0-9.-]{1,253})")


def reference(text: str) -> tuple[set[str], set[str]]:
    dests = {m.group(1).lower() for m in EMAIL.finditer(text)}
    dests |= {m.group(1).lower().rstrip(".") for m in URL.finditer(text)}
    return dests, {m.group(0).lower()[:128] for m in EMAIL.finditer(text)}


def tricky(r: random.Random) -> str:
    pieces = ["a@b.com@c.org", "x" * r.randint(60, 70) + "@y.io", "q" * 64 + "!z@w.io", "ü@ö.de",
              "ñame@Ex.COM", "a@b.c+x@y.io", "a@b.c.+d@e.f", "1://a.b", "a://b://c.d",
              "sftp+x://u:p@Host.IO./x", "://h", "abcdefghijklmnopqrs://h.io", "http://a@b.c@d.e",
              "Mail: ann@x.io, bo@Y.io;", "@x.io", " ", "\t", "@", "://", "/", ".", "-"]
    alphabet = "ab1.-+_@:/ Üé"
    return "".join(r.choice(pieces) if r.random() < 0.4 else r.choice(alphabet) for _ in range(r.randint(1, 12)))


def test_addresses_and_hosts_are_those_the_plain_patterns_find() -> None:
    r = random.Random(8)
    for _ in range(3000):
        text = tricky(r)
        f = extract("t", {"body": text})
        dests, recips = reference(text)
        assert (set(f.destinations), set(f.recipients)) == (dests, recips) or max(len(dests), len(recips)) > 8, text


def test_path_prefixes_are_those_of_the_plain_rule() -> None:
    # Several paths in one call take the batched search; a space, a backslash or "//" the
    # path-by-path rule.
    r = random.Random(9)
    for _ in range(3000):
        paths = ["".join(r.choice(["/", "~", ".", "C:/", "d:\\", "a", "b", "/", "//", " ", "x" * 70])
                         for _ in range(r.randint(1, 6))) for _ in range(r.randint(1, 4))]
        f = extract("t", {"attachments": paths})
        assert set(f.paths) == {p for p in map(_path_prefix, paths) if p}, paths


def test_keys_are_matched_in_any_case_and_lists_take_their_key_role() -> None:
    f = extract("notify", {"To": ["#ops", "Bob@Corp.example"], "FILE": "reports/q1.csv", "Query": "vault token"})
    assert set(f.recipients) == {"#ops", "bob@corp.example"}
    assert f.paths == ("reports",)
    assert f.sensitive == "token" and f.egress  # the first marker of the list the value holds


def test_the_walk_is_bounded_whatever_the_shape() -> None:
    deep: object = "x@evil.io"
    for _ in range(50):
        deep = [deep]
    shapes = [[[]] * 100_000, {str(i): {} for i in range(100_000)}, [["a"] * 100] * 100,
              {f"k{i}": "y" * 3000 for i in range(100)}, deep]
    for args in shapes:
        started = time.perf_counter()
        f = extract("t", args)
        assert time.perf_counter() - started < 0.01, args  # not proportional to the 100,000 items
        assert f.size <= MAX_LEAVES * 3000
    assert extract("t", deep).destinations == ()  # deeper than MAX_DEPTH: not looked at
    # Exactly MAX_LEAVES one-character leaves, whatever the mix of lists and values.
    for args in ({"a": ["x"] * 48, **{f"b{i}": "y" for i in range(47)}}, [{"a": ["x"] * 30, "b": "y"}, ["z"] * 40],
                 {f"k{i}": ["x", ["y"]] for i in range(40)}):
        assert extract("t", args).size == MAX_LEAVES


def best_of(args: object, n: int = 5) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        extract("t", args)
        times.append(time.perf_counter() - started)
    return min(times)


def test_address_search_is_linear_in_the_text() -> None:
    # The plain pattern is tried at every character and backtracks over up to 64 before an "@":
    # on runs of local characters it took ~3 ms here, 300x the cost of as much prose.
    plain = best_of({"body": "y" * 8000})
    for text in [("x" * 2047 + "@") * 4, "a@" * 4000, ("x" * 63 + "@b") * 120, "@" * 8000, "://" * 2700]:
        assert best_of({"body": text}) < 50 * plain + 0.001, text[:20]
