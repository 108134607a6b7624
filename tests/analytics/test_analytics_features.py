"""Feature extraction: the fast searches find what the plain rules define, on any text, in
bounded time."""

from __future__ import annotations

import random
import re
import time

from thoth.analytics import extract
from thoth.analytics.features import _PROBES, _SENSITIVE, MAX_DEPTH, MAX_LEAVES, _path_prefix

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
    for text in [("x" * 2047 + "@") * 4, "a@" * 4000, ("x" * 63 + "@b") * 120, "@" * 8000, "://" * 2700,
                 ("x" * 60 + "@\n") * 48, "a@b.cc\n" * 47 + "x" * 2000, "\n" * 2000 + "a@b.cc\nc@d.ee"]:
        assert best_of({"body": text}) < 50 * plain + 0.001, text[:20]


# -- nested arguments ---------------------------------------------------------------------------

def test_records_give_the_features_worked_out_by_hand() -> None:
    records: list[dict[str, object]] = [{"id": i, "path": f"/data/reports/q{i}.csv", "owner": f"U{i}@Corp.example"}
                                        for i in range(12)]
    args = {"records": records, "options": {"format": "csv", "limit": 500}}
    f = extract("send_email", args)
    assert f.tool == "send_email" and f.egress  # "send" in the tool name
    assert f.destinations == ("corp.example",)
    assert f.recipients == tuple(f"u{i}@corp.example" for i in range(8))  # the first 8, in order
    assert f.paths == ("/data/reports",)
    # Paths: 10 of 20 characters and 2 of 21; owners: 10 of 15 and 2 of 16; "csv"; 13 numbers
    # of 8 each (12 ids and the limit).
    assert f.size == (200 + 42) + (150 + 32) + 3 + 13 * 8
    assert f.sensitive is None
    records[10]["path"] = "/home/u10/.ssh/id_rsa"  # a secret in the eleventh record
    assert extract("read_file", args).sensitive == "id_rsa"


def plain_walk(args: object) -> tuple[list[str], int]:
    """The walk as its documentation states it, one call per container: the string leaves in
    order and the number of other leaves."""
    strings: list[str] = []
    other = 0

    def leaves_of(c: object, depth: int, room: int) -> int:  # returns the leaves taken
        nonlocal other
        taken = 0
        later: list[tuple[object, int]] = []
        items = list(c.values()) if isinstance(c, dict) else list(c)  # type: ignore[call-overload]
        for v in items[:room]:
            if type(v) is str:
                strings.append(v)
                taken += 1
            elif isinstance(v, (dict, list, tuple)):
                # A dict's list that fits, with the rest of the dict, gives its strings and
                # numbers in place; its containers come later, two levels down.
                if (isinstance(c, dict) and type(v) is list and v and depth + 1 < MAX_DEPTH
                        and len(v) + len(items) <= room - taken):
                    for w in v:
                        if type(w) is str:
                            strings.append(w)
                            taken += 1
                        elif isinstance(w, (dict, list, tuple)):
                            later.append((w, depth + 2))
                        else:
                            other += 1
                            taken += 1
                else:
                    later.append((v, depth + 1))
            else:
                other += 1
                taken += 1
        for v, d in later:
            if room - taken <= 0:
                break
            if v and d < MAX_DEPTH:
                taken += leaves_of(v, d, room - taken)
            else:  # empty or too deep: one leaf
                strings.append("")
                taken += 1
        return taken

    if args:
        leaves_of(args, 0, MAX_LEAVES)
    return strings, other


def random_args(r: random.Random, depth: int = 0) -> object:
    x = r.random()
    if depth > 6 or x < 0.45:
        return r.choice([f"u{r.randint(0, 20)}@x{r.randint(0, 3)}.io", "/d/e/f", "text", "", 7, None, 1.5, True])
    if x < 0.7:
        return {f"k{i}": random_args(r, depth + 1) for i in range(r.randint(0, 6))}
    if x < 0.9:  # (a long list now and then, past the leaf budget)
        return [random_args(r, depth + 1) for _ in range(r.randint(0, 60 if depth < 2 and r.random() < 0.2 else 8))]
    return tuple(random_args(r, depth + 1) for _ in range(r.randint(0, 5)))


def first_distinct(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))[:8]


def test_the_walk_takes_the_leaves_the_documentation_states_in_its_order() -> None:
    r = random.Random(10)
    for _ in range(3000):
        args = random_args(r)
        if not isinstance(args, (dict, list, tuple)):
            continue
        strings, other = plain_walk(args)
        f = extract("t", args)
        assert f.size == sum(map(len, strings)) + 8 * other, args
        # Leaves hold one address each here, so the recipients are those of the leaves, in order.
        assert f.recipients == first_distinct([s for s in strings if "@" in s]), args


def test_address_lines_give_what_the_plain_pattern_finds_in_order() -> None:
    # Leaves that are one address each take a faster search than addresses in prose.
    r = random.Random(11)
    pieces = ["u@Corp.example", "İİ@corp.example", "ñame@Ex.COM", "x" * 64 + "@" + "a" * 60 + ".b",
              "y" * 64 + "@" + "a" * 60 + ".b", "a@b", "a@b.c.", "@x.io", "a.b+c@d-e.f", "/d/e",
              "q" * 65 + "@w.io", "Mail: ann@x.io", "K@x.io", "a@b.cc\n", "\nd@e.ff"]
    for _ in range(3000):
        leaves = [r.choice(pieces) if r.random() < 0.7 else f"p{r.randint(0, 9)}@h{r.randint(0, 2)}.org"
                  for _ in range(r.randint(2, 14))]
        text = "\n".join(leaves)
        f = extract("t", {"to_list": leaves})
        found = list(EMAIL.finditer(text))
        assert f.recipients == first_distinct([m.group(0).lower()[:128] for m in found]), leaves
        assert f.destinations == first_distinct([m.group(1).lower() for m in found]), leaves


def test_paths_of_one_folder_and_others_give_the_prefixes_of_the_plain_rule_in_order() -> None:
    r = random.Random(12)
    for _ in range(3000):
        paths = [r.choice(["/", "~/", "./", "C:/"]) + "/".join(r.choice(["data", "dat", "reports", "q.csv", ""])
                                                             for _ in range(r.randint(1, 4)))
                 for _ in range(r.randint(1, 8))]
        f = extract("t", {"attachments": paths})
        assert f.paths == first_distinct([p for p in map(_path_prefix, paths) if p]), paths


def test_each_secret_marker_holds_a_probe_and_is_found_as_the_first_of_the_list() -> None:
    assert all(any(p in m for p in _PROBES) for m in _SENSITIVE)
    r = random.Random(13)
    for _ in range(2000):
        name = "".join(r.choice([*_SENSITIVE, "x", "/", "W", "K", "_", ".", "Vault", " "]) for _ in range(r.randint(1, 6)))
        present = [m for m in _SENSITIVE if m in name.lower()]
        assert extract("t", {"path": "/a/" + name, "name": name}).sensitive == (present[0] if present else None), name
