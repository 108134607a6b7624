"""Cheap, bounded feature extraction from one tool call.

Tool arguments are untrusted text of any shape. One walk over them (depth and leaf count
capped) yields everything the baseline and the scorer need, so a call is parsed once.

Cost model: each Python operation costs 30-200 ns here (a slice, a method call, an isinstance
with a tuple), a character scanned in C a nanosecond or less, and a regular expression that
starts with a character class ~30 ns per character it is tried at. So the walk does as little
as it can per value (keep strings, look up the key's role, look at the first character), and
the searches (addresses, URLs, path prefixes, secret markers) run once over the joined text
of all leaves, in C, anchored on a literal ("@", "://") where they can be. Shapes that recur
(records in a list, leaves that are one address each, the files of one folder) take shortcuts
that give the same features: tests/analytics/test_analytics_features.py holds the plain rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

MAX_DEPTH = 5
MAX_LEAVES = 48  # values looked at per call (an empty or too deep container counts as one)
# Only the head of a long string is searched for addresses: exfiltrated blobs are long, and
# scanning them whole would make the cost grow with the payload.
SCAN_CHARS = 2048
# Total characters of argument text examined per call, whatever the number of leaves: a call
# with 48 leaves of 2 KB would otherwise cost ~50 us; beyond the budget a leaf only counts in size.
SCAN_BUDGET = 8192
MAX_VALUE_LEN = 128

# An e-mail address is local@domain: the local part 1 to 64 of [\w.+-] up to the "@" (and after
# the previous address, if they touch), the domain labels of [A-Za-z0-9-] joined by dots. Each
# "@" is found with str.find (memchr) and the local part is read back from it. The pattern this
# replaces, r"[\w.+-]{1,64}@(...)", was tried at every character of the text (as is any pattern
# that starts with a character class: 30-200 ns per character) and took 0.8 ms on a leaf of
# "x" * 2000 + "@", 3 ms on four.
_AT_DOMAIN = re.compile(r"@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
_LOCAL_REVERSED = re.compile(r"[\w.+-]{1,64}")
_LOCAL_ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-"  # \w.+- in ASCII
# A line of "\n" + the joined text that is one address and nothing else (a "to" or "owner"
# argument, the usual case). All of them in one C pass, ~0.2 us an address against ~1 us in
# the loop of _emails. (Possessive: "@" is no local character, so giving some back could never
# let the "@" match; nor a label, as the line ends after the last.)
_ADDRESS_LINE = re.compile(r"\n([\w.+-]{1,64}+@[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+)++)(?=\n|\Z)")
# The same for lower-case ASCII text, with smaller classes: 15% quicker.
_ADDRESS_LINE_LOWER = re.compile(r"\n([a-z0-9_.+-]{1,64}+@[a-z0-9-]{1,63}+(?:\.[a-z0-9-]{1,63}+)++)(?=\n|\Z)")
# A URL is scheme://[userinfo@]host, the scheme a letter then up to 15 of [A-Za-z0-9+.-].
_URL_REST = re.compile(r"://(?:[^/\s@]*@)?([A-Za-z0-9.-]{1,253})")
_SCHEME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-"
# A drive-letter path ("C:\\x", "d:/x") at the start of a leaf of the joined text (but the first).
_DRIVE_PATH = re.compile(r"\n[^\n]:[\\/]")
# The prefix of each line of "\n" + a "\n"-joined list of paths with no "\\", "//", " " or empty
# line: the first component, and the second too when a third follows (as _path_prefix does).
_PATH_PREFIXES = re.compile(r"\n(/?[^/\n]*(?:/[^/\n]+(?=/[^/\n]))?)")
# The same prefix when it has two components (a third follows), for one path.
_TWO_COMPONENTS = re.compile(r"/?+[^/\n]*/[^/\n]+(?=/[^/\n])")  # ("/?+": "/a" is no "" then "a")

# Keys whose value names who or where data goes.
_RECIPIENT_KEYS = frozenset(
    {"to", "cc", "bcc", "recipient", "recipients", "channel", "channel_id", "email", "to_email",
     "to_address", "address", "phone", "destination", "dest", "target", "webhook", "url",
     "endpoint", "chat_id"}
)
_PATH_KEYS = frozenset({"path", "file", "filename", "filepath", "file_path", "dir", "directory",
                        "src", "dst", "source", "folder"})
# Keys whose value names a secret or a resource (a secret marker in free text is not enough).
_NAME_KEYS = _PATH_KEYS | {"key", "name", "secret", "secret_name", "secret_id", "resource", "command",
                           "cmd", "query"}

# Keys that address a message or a transfer: a call carrying one sends data somewhere.
_SEND_KEYS = frozenset({"to", "cc", "bcc", "recipient", "recipients", "channel", "channel_id", "webhook",
                        "destination", "dest", "chat_id", "to_email", "to_address"})
# Words in a tool name that mean "data leaves the agent".
_EGRESS_WORDS = ("send", "mail", "post", "upload", "webhook", "slack", "message", "publish",
                 "share", "transfer", "export", "tweet", "sms", "notify", "wire", "pay")
# Markers of secrets in a tool name or an argument.
_SENSITIVE = ("secret", "credential", "password", "passwd", "token", "api_key", "apikey",
              "private_key", "id_rsa", "id_ed25519", ".ssh", ".env", ".aws", ".pem", "shadow",
              "vault", "keychain", ".netrc", "kubeconfig")
# Each marker holds one of these, so a text that holds none of them holds no marker: the usual
# answer, from 3 one-character searches (memchr, ~20 ns) and 7 others instead of 19 (12 paths:
# 0.8 us against 1.8 us). The one-character probes, the likeliest, go first: a text that holds
# one pays ~40 ns more than the 19 searches.
_PROBES = ("w", "k", "_", "secret", "credential", ".env", "vault", ".ssh", ".pem", ".netrc")


# Not frozen: a frozen dataclass's __init__ costs ~0.8 us more, on every enforced call. Treat it
# as read-only all the same.
@dataclass(slots=True)
class CallFeatures:
    """What one call looks like to the analytics: computed once per call (do not modify)."""

    tool: str
    destinations: tuple[str, ...]  # e-mail domains and URL hosts, lower case
    recipients: tuple[str, ...]  # values of recipient-like keys and full e-mail addresses
    paths: tuple[str, ...]  # path prefixes: the first two components
    size: int  # characters in all string leaves
    sensitive: str | None  # the first secret marker seen in the tool name or arguments
    egress: bool  # the tool sends data out (by its name, or an argument addresses a message)


def _path_prefix(s: str) -> str | None:
    """The first two components of a path ("/data/reports" for "/data/reports/q1.csv"), only
    the first when the path ends there ("/etc" for "/etc/passwd"); None if `s` is no path."""
    if len(s) > 1024 or "\n" in s or " " in s[:64]:
        return None
    head = s[0]
    if head in "/~." or (len(s) > 2 and s[1] == ":" and s[2] in "\\/"):
        parts = [p for p in s.replace("\\", "/").split("/", 4)[:4] if p]
        if not parts:
            return "/"
        lead = "/" if head == "/" else ""
        # A file directly under the root keeps only its directory.
        keep = parts[:2] if len(parts) > 2 else parts[:1]
        return (lead + "/".join(keep))[:MAX_VALUE_LEN]
    return None


def _path_prefixes(cands: list[str], paths: list[str]) -> bool:
    """Append the prefixes of the path-like leaves `cands` (their first character is one of
    "/~." or they start with a drive letter) that are paths; False if some are not paths."""
    joined = "\n".join(cands)
    if (len(joined) <= 1024 and " " not in joined and "\\" not in joined
            and joined.count("\n") == len(cands) - 1):  # no "" either: it would join as "\n\n"
        # Paths of a call often share their first two components (files of one folder). The
        # prefix depends only on the path up to the first character of the third component, so
        # if all the paths start as the first one does up to there, all have its prefix. (A "//"
        # further on is an empty component that _path_prefix drops, after the third.)
        m = _TWO_COMPONENTS.match(cands[0])
        if m is not None:
            head = cands[0][:m.end() + 2]
            if "//" not in head and joined.count("\n" + head) == len(cands) - 1:
                paths.append(m[0][:MAX_VALUE_LEN])
                return True
        if "//" not in joined:
            found = _PATH_PREFIXES.findall("\n" + joined)  # all of them in one C pass: 1/3 of the cost
            paths += found if max(map(len, found)) <= MAX_VALUE_LEN else [p[:MAX_VALUE_LEN] for p in found]
            return True
    n = len(paths)
    paths += filter(None, map(_path_prefix, cands))
    return len(paths) - n == len(cands)


# Roles of an argument key, as bits.
_SEND, _RECIPIENT, _PATH, _NAME = 1, 2, 4, 8
_SEND_OR_RECIPIENT = _SEND | _RECIPIENT
_KEY_ROLES = {k: (_SEND if k in _SEND_KEYS else 0) | (_RECIPIENT if k in _RECIPIENT_KEYS else 0)
              | (_PATH if k in _PATH_KEYS else 0) | (_NAME if k in _NAME_KEYS else 0)
              for k in _SEND_KEYS | _RECIPIENT_KEYS | _NAME_KEYS}
# The role of each key as sent (any case), memoised: a tool's argument names recur on every call.
_ROLE_OF: dict[str, int] = {}
_SCALARS = frozenset({int, float, bool, type(None)})
_CONTAINERS = (dict, list, tuple)


def _key_role(k: object) -> int:
    if type(k) is not str:
        return _KEY_ROLES.get(str(k), 0)
    role = _KEY_ROLES.get(k.lower(), 0)
    if len(k) <= 64:
        if len(_ROLE_OF) >= 4096:  # a client sending ever new keys: start over
            _ROLE_OF.clear()
        _ROLE_OF[k] = role
    return role


def _visit(c: Any, vals: list[str], pathy: list[tuple[int, int]], marks: list[tuple[int, int]]) -> int:
    """Append the string leaves of the non-empty container `c` to `vals` (empty), at most
    MAX_LEAVES leaves; to `pathy` (index, key role) of those that look like a path (they start
    with one of "/~."), to `marks` (index, key role) of the others whose key has a role, and of
    the path-like ones whose key makes them a recipient. Returns the number of other leaves
    (numbers, booleans, nulls), which count for 8 characters each.

    A container's own values come before those of the containers in it (depth first). An empty
    container or one deeper than MAX_DEPTH counts as a leaf (an empty string): that bounds the
    walk. The items of a list have the role of the list's key.

    The containers still to walk are on a stack, not in calls: a call per container cost ~80 ns
    more each (1 us of the 8 that 12 records took)."""
    other = 0
    role = depth = 0
    left = MAX_LEAVES  # leaves that may still be taken
    todo: list[tuple[Any, int, int]] | None = None  # (container, role, depth), the next one last
    role_of = _ROLE_OF.get
    while True:
        kids: list[tuple[Any, int, int]] | None = None  # the containers in `c`, in order
        if isinstance(c, dict):
            for k, v in c.items() if len(c) <= left else islice(c.items(), left):
                t = type(v)
                if t is str:
                    r = role_of(k)
                    if r is None:
                        r = _key_role(k)
                    if v and v[0] in "/~.":
                        pathy.append((len(vals), r))
                        if r & _SEND_OR_RECIPIENT:
                            marks.append((len(vals), r & _SEND_OR_RECIPIENT))
                    elif r:
                        marks.append((len(vals), r))
                    vals.append(v)
                elif t is int or t in _SCALARS:  # (ids first)
                    other += 1
                elif t is dict or t is list or isinstance(v, _CONTAINERS):  # (a tuple isinstance is slow)
                    r = role_of(k)
                    if r is None:
                        r = _key_role(k)
                    if (t is list and v and depth + 1 < MAX_DEPTH
                            and len(v) + len(c) <= MAX_LEAVES - len(vals) - other):
                        # A short list's strings and numbers here, in order (e.g. "cc" before
                        # "body") and without a container of its own; there is room for all of
                        # it and the rest of `c`.
                        for w in v:
                            t = type(w)
                            if t is str:
                                if w and w[0] in "/~.":
                                    pathy.append((len(vals), r))
                                    if r & _SEND_OR_RECIPIENT:
                                        marks.append((len(vals), r & _SEND_OR_RECIPIENT))
                                elif r:
                                    marks.append((len(vals), r))
                                vals.append(w)
                            elif t is dict or t is list or (t not in _SCALARS and isinstance(w, _CONTAINERS)):
                                if kids is None:  # (records: containers tested before numbers)
                                    kids = []
                                kids.append((w, r, depth + 2))
                            else:
                                other += 1
                    else:
                        if kids is None:
                            kids = []
                        kids.append((v, r, depth + 1))
                else:
                    other += 1
        else:
            for v in c if len(c) <= left else c[:left]:
                t = type(v)
                if t is str:
                    if v and v[0] in "/~.":
                        pathy.append((len(vals), role))
                        if role & _SEND_OR_RECIPIENT:
                            marks.append((len(vals), role & _SEND_OR_RECIPIENT))
                    elif role:
                        marks.append((len(vals), role))
                    vals.append(v)
                elif t is dict or t is list or (t not in _SCALARS and isinstance(v, _CONTAINERS)):
                    if kids is None:  # (a tuple isinstance is slow)
                        kids = []
                    kids.append((v, role, depth + 1))
                else:
                    other += 1
        if kids is not None:
            kids.reverse()
            if todo is None:
                todo = kids
            else:
                todo += kids
        # The next container to walk; an empty or too deep one is a leaf.
        while True:
            if not todo:
                return other
            left = MAX_LEAVES - len(vals) - other
            if left <= 0:
                return other
            c, role, depth = todo.pop()
            if c and depth < MAX_DEPTH:
                break
            vals.append("")


def _first_marker(low: str) -> str | None:
    """The first marker of _SENSITIVE in the lower-case text `low`."""
    # Substring searches of the lowered text beat one case-insensitive regex alternation by
    # ~5-15x.
    for p in _PROBES:
        if p in low:
            break
    else:
        return None
    for m in _SENSITIVE:
        if m in low:
            return m
    return None


def _sensitive_marker(s: str) -> str | None:
    return _first_marker(s[:SCAN_CHARS].lower())


@lru_cache(maxsize=1024)
def _tool_facts(tool_name: str) -> tuple[str | None, bool]:
    """(secret marker, egress) of a tool name: the same few names recur on every call."""
    low = tool_name.lower()
    return _sensitive_marker(tool_name), any(w in low for w in _EGRESS_WORDS)


def _address_lines(text: str, n: int, dests: list[str], recips: list[str]) -> bool:
    """If each of the `n` "@" of `text` is in a line that is one address and nothing else, append
    what _emails would (the lines hold all the addresses, whole) and return True."""
    if len(text) <= SCAN_CHARS and text.isascii():
        # Lower case first: it changes no match (\w and the domain take either case) and costs
        # less than address by address (~0.25 us a KB).
        found = _ADDRESS_LINE_LOWER.findall(("\n" + text).lower())
        if len(found) != n:
            return False
        # Often one domain (a team's addresses), told by one count and appended once; if it
        # is at most 63 characters long, no address is longer than MAX_VALUE_LEN.
        first = found[0]
        domain = first[first.index("@") + 1:]
        if len(domain) <= 63 and ("\n".join(found) + "\n").count("@" + domain + "\n") == n:
            dests.append(domain)
            recips += found
            return True
    else:
        found = [a.lower() for a in _ADDRESS_LINE.findall("\n" + text)]
        if len(found) != n:
            return False
    dests += [a[a.index("@") + 1:] for a in found]
    recips += [a[:MAX_VALUE_LEN] for a in found]
    return True


def _emails(text: str, at: int, dests: list[str], recips: list[str]) -> None:
    """Append the domains and the addresses of the e-mail addresses in `text`, lower case;
    `at` is the position of the first "@"."""
    # Several addresses (one costs as much either way): perhaps each is a leaf, or a line, of its
    # own. Not tried on a text of long lines, where it would most likely fail after a search of
    # ~5 ns a character, added to the loop below.
    following = text.find("@", at + 1)
    if following > 0 and len(text) <= 64 * MAX_LEAVES:
        n = text.count("@", at)
        if n <= MAX_LEAVES and len(text) <= 64 * n and _address_lines(text, n, dests, recips):
            return
    ascii_ = text.isascii()  # O(1); if so a local part is a run of _LOCAL_ASCII
    prev = 0  # the end of the last address: the next one's local part starts after it
    m = _AT_DOMAIN.match(text, at)
    while True:
        if m is None:  # no domain after this "@": on to the next "@" that has one (in C)
            m = _AT_DOMAIN.search(text, at + 1)
            if m is None:
                return
            at = m.start()
        end = m.end()
        start = prev if prev > at - 64 else at - 64
        if ascii_:
            head = text[start:at]
            local = head[len(head.rstrip(_LOCAL_ASCII)):]
        else:  # \w beyond ASCII: the local part, read backwards from the "@"
            found = _LOCAL_REVERSED.match(text[at - 1:start - 1 if start > 0 else None:-1]) if at > start else None
            local = found[0][::-1] if found else ""
        if local:
            prev = end
            domain = m[1].lower()
            address = local.lower() + "@" + domain
            dests.append(domain)
            recips.append(address if len(address) <= MAX_VALUE_LEN else address[:MAX_VALUE_LEN])
        if following < 0:  # (this "@" was the only one)
            return
        at = text.find("@", end)  # (memchr: a fast jump over the text between addresses)
        if at < 0:
            return
        m = _AT_DOMAIN.match(text, at)


def _url_hosts(text: str, at: int, dests: list[str]) -> None:
    """Append the hosts of the URLs in `text`, lower case; `at` is the position of the first
    "://"."""
    prev = 0
    m = _URL_REST.match(text, at)
    while True:
        if m is None:  # no host after this "://": on to the next one that has one (in C)
            m = _URL_REST.search(text, at + 1)
            if m is None:
                return
            at = m.start()
        # The scheme: the run of scheme characters (at most 16) before "://", from a letter on.
        window = text[max(prev, at - 16):at]
        scheme = window[len(window.rstrip(_SCHEME_CHARS)):]
        if scheme.lstrip("0123456789+.-"):
            prev = m.end()
            dests.append(m[1].lower().rstrip("."))
        at = text.find("://", m.end())  # (a URL holds no further "://")
        if at < 0:
            return
        m = _URL_REST.match(text, at)


def _drive_paths(heads: list[str], pathy: list[tuple[int, int]],
                 marks: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """`pathy` and `marks` with the leaves that start with a drive letter ("C:\\", "d:/") moved
    to the path-like ones."""
    drive = {i for i, h in enumerate(heads) if h[1:3] in (":/", ":\\")} - {i for i, _ in pathy}
    roles = dict(marks)
    pathy = sorted(pathy + [(i, roles.get(i, 0)) for i in drive])
    marks = [(i, r) for i, r in marks if i not in drive or r & _SEND_OR_RECIPIENT]
    return pathy, [(i, r & _SEND_OR_RECIPIENT) if i in drive else (i, r) for i, r in marks]


def extract(tool_name: str, tool_args: object) -> CallFeatures:
    """Walk the arguments once (bounded) and return the call's features."""
    vals: list[str] = []
    pathy: list[tuple[int, int]] = []  # (index in vals, key role) of the leaves that may be paths
    marks: list[tuple[int, int]] = []  # (index in vals, key role) of other leaves whose key has one
    if type(tool_args) is dict or isinstance(tool_args, _CONTAINERS):
        size = 8 * _visit(tool_args, vals, pathy, marks) if tool_args else 0
    elif type(tool_args) is str:
        vals.append(tool_args)
        if tool_args and tool_args[0] in "/~.":
            pathy.append((0, 0))
        size = 0
    else:
        size = 8
    size += sum(map(len, vals))
    sensitive, egress = _tool_facts(tool_name)
    # The heads of the leaves within the scan budget (in the usual call, all of them whole).
    heads = vals
    if size > SCAN_CHARS:
        heads = []
        budget = SCAN_BUDGET
        for v in vals:
            if budget <= 0:
                break
            h = v[:SCAN_CHARS if budget > SCAN_CHARS else budget]
            budget -= len(h)
            heads.append(h)
        pathy = [(i, r) for i, r in pathy if i < len(heads)]
        marks = [(i, r) for i, r in marks if i < len(heads)]
    dests: list[str] = []
    recips: list[str] = []
    # One search over all the heads: "\n" is part of no address or URL, so none spans two.
    text = "\n".join(heads)
    at = text.find("@")
    if at >= 0:
        _emails(text, at, dests, recips)
    if ":" in text:
        at = text.find("://")
        if at >= 0:
            _url_hosts(text, at, dests)
        if text[1:3] in (":/", ":\\") or _DRIVE_PATH.search(text):  # rare: drive letters
            pathy, marks = _drive_paths(heads, pathy, marks)
    paths: list[str] = []
    names: list[str] = []  # leaves that may name a secret: paths and values of name-like keys
    if pathy:
        names = [vals[i] for i, _ in pathy]
        if not _path_prefixes(names, paths):  # rare: not all are paths; for those, the key decides
            names = [vals[i] for i, _ in pathy if _path_prefix(vals[i]) is not None]
            marks = sorted(marks + [(i, r & ~_SEND_OR_RECIPIENT) for i, r in pathy
                                    if r & ~_SEND_OR_RECIPIENT and _path_prefix(vals[i]) is None])
    for i, role in marks:
        v = vals[i]
        if not v:
            continue
        if role & _SEND:
            egress = True
        if role & _RECIPIENT:
            h = heads[i]
            if "@" not in h and "://" not in h:
                recips.append(h[:MAX_VALUE_LEN].strip().lower())
        if role & _PATH:
            p = v.replace("\\", "/").split("/", 1)[0][:MAX_VALUE_LEN]
            if p:
                paths.append(p)
                names.append(v)
                continue
        if role & _NAME:
            names.append(v)
    if sensitive is None and names:
        if len(names) == 1:
            sensitive = _sensitive_marker(names[0])
        else:  # one scan of all the candidates; the first candidate holding a marker names it
            if size > SCAN_CHARS and max(map(len, names)) > SCAN_CHARS:  # (no leaf is longer than size)
                names = [n[:SCAN_CHARS] for n in names]
            if _first_marker("\n".join(names).lower()) is not None:
                sensitive = next(filter(None, map(_sensitive_marker, names)))
    return CallFeatures(
        tool_name[:MAX_VALUE_LEN],
        _first_distinct(dests) if dests else (),  # (a call less for the usual empty lists)
        _first_distinct(recips) if recips else (),
        _first_distinct(paths) if paths else (),
        size,
        sensitive,
        egress,
    )


def _first_distinct(values: list[str]) -> tuple[str, ...]:
    if len(values) < 2:  # the common case: no dict needed
        return tuple(values)
    # If the first ones all differ (the owners of records), they are the answer; or all are the
    # same (their domain). A set of them is built at twice the speed of a dict of all.
    head = values[:8]
    distinct = len(set(head))
    if distinct == len(head):
        return tuple(head)
    if distinct == 1 and values.count(head[0]) == len(values):
        return (head[0],)
    return tuple(dict.fromkeys(values))[:8]
