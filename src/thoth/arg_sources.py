"""Where each argument value of a tool call came from: the wire's `arg_sources` (docs/wire.md,
docs/provenance.md).

A session's `SourceIndex` holds what the agent has seen: the user's task (every turn) and the
outputs of the tools it ran. Each text is normalised (thoth.textnorm) and cut into keys:

- identifiers: e-mail addresses, URLs and their hosts, host names, file names, and numbers of
  6 or more digits with their separators removed (account numbers, IBANs, phone numbers, also
  written in groups);
- word n-grams of 1 to 3 words (a short value such as a name is found as its words in a row;
  a long text as its 3-word shingles).

A key maps to a bit mask of the sources that hold it (bit 0 is the task, one bit per output),
so looking a value up is a few dict reads whatever the number of outputs. Looking up a value:

- an identifier, or a value of at most 3 words: the sources holding it exactly;
- longer text: the sources of every identifier inside it, plus each source holding at least
  half of its 3-word shingles (12 sampled evenly; at most 8 needed: a copied sentence is enough);
- a value with an identifier the task does not hold is never the user's (the task is dropped
  from its sources): the user's address beside an attacker's, or the user's words beside a
  page's link, carry something the user did not say.

Bounds (memory per session): the last MAX_OUTPUTS outputs, each cut to OUTPUT_LIMIT characters,
and at most MAX_TEXT characters of output text indexed in all; older outputs are forgotten
(their values then look model-made). The task's texts are bounded by MAX_TASK_TEXT.

Recording an output costs the call path only its text (outputs.py) and a queue append; outputs
of 2 KB or more are indexed on a background thread, shorter ones by the next lookup, and every
lookup first finishes what is still queued (`drain`, under the index's lock, so it also waits
for an output the thread is on): no decision depends on timing.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thoth.textnorm import normalize

MAX_OUTPUTS = 64
MAX_TEXT = 256 * 1024
MAX_TASK_TEXT = 64 * 1024
BACKGROUND_CHARS = 2048  # outputs at least this long are indexed on the background thread
MAX_LEAVES = 64  # argument values looked up per call
MIN_CHARS = 3  # shorter values carry no data worth tracing
MAX_VALUE_CHARS = 8 * 1024  # of one argument value looked up (its start): arguments are untrusted
TASK = "task"

# Identifiers written in groups span several words: IBANs and phone/account numbers. Looked for
# only in text that has digits. Single-word identifiers are found word by word (_is_ident).
_GROUPED = re.compile(r"[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?|\+?\d[\d .()/-]{4,}\d")
_HAS_DIGIT = re.compile(r"\d")
# Dates and times are written like grouped numbers but name no account or destination.
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[ t]\d{1,2})?$|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?: \d{1,2})?$")
_PUNCT = ".,;:!?()[]{}<>\"'`*|"
MAX_SHINGLES = 12  # of a long value looked up (evenly spread): the cost stays flat with length


def _words(text: str) -> list[str]:
    """Words of normalised text, punctuation around them cut (not inside: addresses, URLs)."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


def _is_ident(word: str) -> bool:
    """An e-mail address, URL, host or file name, or a word with 6+ digits."""
    if word.isalpha():  # most words: checked first, it is the cheapest answer
        return False
    if "@" in word or "://" in word:
        return True
    if "." in word:
        tail = word.rsplit(".", 1)[1]
        return tail.isalnum() and not tail.isdigit()
    return sum(c.isdigit() for c in word) >= 6 if _HAS_DIGIT.search(word) else False


def _ident_keys(token: str) -> Iterator[str]:
    """The keys of one identifier: itself, without scheme and its host (URLs), its host (a
    host with a path), without spaces (grouped numbers), its digits (6 or more)."""
    yield token
    if "://" in token:
        rest = token.split("://", 1)[1]
        yield rest.rstrip("/")
        yield rest.split("/", 1)[0]
    elif "/" in token and "@" not in token:
        yield token.split("/", 1)[0]
    if " " in token:
        yield token.replace(" ", "")
    if _HAS_DIGIT.search(token):
        digits = "".join(c for c in token if c.isdigit())
        if len(digits) >= 6:
            yield "#" + digits


class SourceIndex:
    """What one session's agent has seen, and which of it holds a value."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._slot_keys: dict[int, list[str]] = {}  # output slot -> its keys (to forget it)
        self._slot_name: dict[int, str] = {0: TASK}
        self._slot_chars: dict[int, int] = {}
        self._tool_mask: dict[str, int] = {}  # "tool:NAME" -> the slots of its outputs
        self._order: deque[int] = deque()  # output slots, oldest first
        self._free = list(range(MAX_OUTPUTS, 0, -1))  # output slots (bits) not in use
        self._text_chars = 0
        self._task_chars = 0
        self._tasks_seen: set[str] = set()
        self._pending: deque[tuple[str, str]] = deque()  # (source name, text) not indexed yet
        self._scheduled = False  # a background drain is queued
        self._lock = threading.Lock()

    @property
    def has_outputs(self) -> bool:
        return bool(self._order or self._pending)

    # Recording -------------------------------------------------------------------------------
    def add_task(self, text: str) -> None:
        if not text or text in self._tasks_seen or self._task_chars >= MAX_TASK_TEXT:
            return
        self._tasks_seen.add(text)
        self._task_chars += len(text)
        self._pending.append((TASK, text[:MAX_TASK_TEXT]))

    def add_output(self, source: str, text: str) -> None:
        """Queue an output (already cut to its limit) for indexing; cheap, on the call path."""
        if text:
            if len(self._pending) >= MAX_OUTPUTS:  # nobody looked anything up for a while
                self._pending.popleft()
            self._pending.append((source, text))
            # A long output is indexed on the background thread (milliseconds for 10 KB); short
            # ones wait for the next lookup, which indexes them inline in microseconds: handing
            # every small output to a thread would cost the agent more than indexing it.
            if len(text) >= BACKGROUND_CHARS and not self._scheduled:
                self._scheduled = True
                _indexer().submit(self._drain_later)

    def _drain_later(self) -> None:
        self._scheduled = False
        self.drain()

    def drain(self) -> None:
        """Index everything queued. Called by the background indexer and before each lookup:
        always through the lock, so a lookup also waits for an output the indexer is still on."""
        with self._lock:
            while self._pending:
                source, text = self._pending.popleft()
                self._index(source, text)

    def _index(self, source: str, text: str) -> None:
        keys = _keys_of(normalize(text))
        if source == TASK:
            for key in keys:
                self._keys[key] = self._keys.get(key, 0) | 1
            return
        while self._order and (len(self._order) >= MAX_OUTPUTS or self._text_chars + len(text) > MAX_TEXT):
            self._forget(self._order.popleft())
        slot = self._free.pop()
        bit = 1 << slot
        for key in keys:
            self._keys[key] = self._keys.get(key, 0) | bit
        self._slot_keys[slot] = list(keys)
        self._slot_name[slot] = source
        tool = source.split("#", 1)[0]
        self._tool_mask[tool] = self._tool_mask.get(tool, 0) | bit
        self._slot_chars[slot] = len(text)
        self._order.append(slot)
        self._text_chars += len(text)

    def _forget(self, slot: int) -> None:
        clear = ~(1 << slot)
        for key in self._slot_keys.pop(slot, ()):
            mask = self._keys.get(key, 0) & clear
            if mask:
                self._keys[key] = mask
            else:
                self._keys.pop(key, None)
        tool = self._slot_name.pop(slot).split("#", 1)[0]
        left = self._tool_mask.get(tool, 0) & clear
        if left:
            self._tool_mask[tool] = left
        else:
            self._tool_mask.pop(tool, None)
        self._text_chars -= self._slot_chars.pop(slot, 0)
        self._free.append(slot)

    # Looking up ------------------------------------------------------------------------------
    def sources_of(self, value: Any) -> list[str] | None:
        """The sources of one scalar value, [] for none; None when it is not looked up."""
        self.drain()
        return self._lookup(value)

    def _lookup(self, value: Any) -> list[str] | None:
        if isinstance(value, bool) or value is None:
            return None
        text = normalize((value if isinstance(value, str) else str(value))[:MAX_VALUE_CHARS])
        if len(text) < MIN_CHARS:
            return None
        return self._names(self._mask(text))

    def _mask(self, text: str) -> int:
        keys = self._keys
        mask = keys.get(text, 0)
        words = _words(text)
        if not words:
            return mask
        if len(words) <= 3:
            mask |= keys.get(" ".join(words), 0)
        # Identifiers inside the value, each on its own. One that the task does not hold takes
        # the task away from the whole value: "user's address, attacker's address" is not the
        # user's, nor is a body that carries a page's link beside the user's words.
        foreign = False
        for token in _tokens_of(text, words):
            found = 0
            for key in _ident_keys(token):
                found |= keys.get(key, 0)
            mask |= found
            foreign = foreign or not found & 1
        if len(words) > 3:
            mask |= self._copied_from(words)
        return mask & ~1 if foreign else mask

    def _copied_from(self, words: list[str]) -> int:
        """Sources holding at least half of the text's (sampled) 3-word shingles."""
        keys = self._keys
        n = len(words) - 2
        step = max(1, n // MAX_SHINGLES)
        picked = range(0, n, step)
        need = max(1, min(8, (len(picked) + 1) // 2))
        counts: dict[int, int] = {}
        for i in picked:
            found = keys.get(f"{words[i]} {words[i + 1]} {words[i + 2]}", 0)
            while found:
                low = found & -found
                counts[low] = counts.get(low, 0) + 1
                found ^= low
        mask = 0
        for bit, hits in counts.items():
            if hits >= need:
                mask |= bit
        return mask

    def _names(self, mask: int) -> list[str]:
        """The sources in a mask: the task, and one output per tool (the trust label the server
        applies is per tool, so more calls of the same tool would say nothing more; this keeps
        a value seen in every output of a chatty tool to one entry)."""
        names = [TASK] if mask & 1 else []
        for tool_mask in self._tool_mask.values():
            hit = mask & tool_mask
            if hit:
                names.append(self._slot_name[(hit & -hit).bit_length() - 1])
        return names

    def sources_for(self, tool_args: dict[str, Any]) -> dict[str, list[str]]:
        """`arg_sources` of one call: each scalar argument value (in lists and objects too) with
        the sources that hold it. Values not looked up (too short, booleans) are left out."""
        self.drain()
        found: dict[str, list[str]] = {}
        for path, value in _leaves(tool_args):
            sources = self._lookup(value)
            if sources is not None:
                found[path] = sources
        return found


def _tokens_of(text: str, words: list[str]) -> Iterator[str]:
    """The identifiers of normalised text: single words, and numbers written in groups."""
    for word in words:
        if _is_ident(word):
            yield word
    if _HAS_DIGIT.search(text):
        for match in _GROUPED.finditer(text):
            if not _DATE.match(match.group()):
                yield match.group()


def _keys_of(text: str) -> set[str]:
    words = _words(text)
    keys = set(words)
    for token in _tokens_of(text, words):
        keys.update(_ident_keys(token))
    keys.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    keys.update(f"{a} {b} {c}" for a, b, c in zip(words, words[1:], words[2:], strict=False))
    return keys


def _leaves(args: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, scalar) of the arguments, paths as docs/wire.md: name, name[i], name.key."""
    stack: list[tuple[str, Any, int]] = [(str(k), v, 0) for k, v in reversed(list(args.items()))]
    n = 0
    while stack and n < MAX_LEAVES:
        path, value, depth = stack.pop()
        if isinstance(value, dict):
            if depth < 4:
                stack.extend((f"{path}.{k}", v, depth + 1) for k, v in reversed(list(value.items())))
        elif isinstance(value, list | tuple):
            if depth < 4:
                stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in reversed(list(enumerate(value))))
        else:
            n += 1
            yield path, value


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _indexer() -> ThreadPoolExecutor:
    """One background thread indexes outputs for every session of the process."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thoth-index")
    return _pool
