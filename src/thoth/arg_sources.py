"""Where each argument value of a tool call came from: the wire's `arg_sources` (docs/wire.md,
docs/provenance.md).

A session's `SourceIndex` holds what the agent has seen: the user's task (every turn) and the
outputs of the tools it ran. Each text is normalised (thoth.textnorm) and cut into keys:

- identifiers: e-mail addresses, URLs and their hosts, host names, file names, and numbers of
  6 or more digits with their separators removed (account numbers, IBANs, phone numbers);
- word n-grams of 1 to 3 words (a short value such as a name is found as its words in a row;
  a long text as its 3-word shingles).

A key maps to a bit mask of the sources that hold it (bit 0 is the task, one bit per output),
so looking a value up is a few dict reads whatever the number of outputs. Looking up a value:

- an identifier, or a value of at most 3 words: the sources holding it exactly;
- longer text: the sources of every identifier inside it, plus each source holding at least
  half of its 3-word shingles (at most 8 needed: a copied sentence is enough).

Bounds (memory per session): the last MAX_OUTPUTS outputs, each cut to OUTPUT_LIMIT characters,
and at most MAX_TEXT characters of output text indexed in all; older outputs are forgotten
(their values then look model-made). The task's texts are bounded by MAX_TASK_TEXT.

Recording an output costs the call path only a reference and the output's text (outputs.py);
indexing runs on a background thread and is finished, inline if need be, before the session's
next decision (`sources_for` calls `drain` first): no decision depends on timing.
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
MAX_LEAVES = 64  # argument values looked up per call
MIN_CHARS = 3  # shorter values carry no data worth tracing
TASK = "task"

_IDENT = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"          # e-mail
    r"|[a-z][a-z0-9+.-]*://[^\s<>\"')\]]+"    # URL
    r"|(?:[\w-]+\.)+[a-z]{2,}(?:/[^\s<>\"')\]]*)?"  # host (and path), or a file name
    r"|\+?\d[\d .()/-]{4,}\d"                  # numbers with separators: accounts, phones
    r"|[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?"  # IBAN, grouped or not
)
_WORD = re.compile(r"[^\W_]+(?:['.@/:-][^\W_]+)*")
_DIGITS = re.compile(r"\d")


def _ident_keys(token: str) -> Iterator[str]:
    """The keys of one identifier match: itself (trailing dots cut), its host, its digits."""
    token = token.rstrip(".,;:!?")
    yield token
    if " " in token:  # an IBAN or a phone number written in groups
        yield token.replace(" ", "")
    if "://" in token:
        rest = token.split("://", 1)[1]
        yield rest.rstrip("/")
        host = rest.split("/", 1)[0]
        yield host
    elif "/" in token and "@" not in token:
        yield token.split("/", 1)[0]
    digits = "".join(_DIGITS.findall(token))
    if len(digits) >= 6:
        yield "#" + digits


class SourceIndex:
    """What one session's agent has seen, and which of it holds a value."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._slot_keys: dict[int, list[str]] = {}  # output slot -> its keys (to forget it)
        self._slot_name: dict[int, str] = {0: TASK}
        self._slot_chars: dict[int, int] = {}
        self._order: deque[int] = deque()  # output slots, oldest first
        self._free = list(range(MAX_OUTPUTS, 0, -1))  # output slots (bits) not in use
        self._text_chars = 0
        self._task_chars = 0
        self._tasks_seen: set[str] = set()
        self._pending: deque[tuple[str, str]] = deque()  # (source name, text) not indexed yet
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
            self._pending.append((source, text))
            _indexer().submit(self.drain)

    def drain(self) -> None:
        """Index everything queued. Called by the background indexer and before each lookup."""
        if not self._pending:
            return
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
        del self._slot_name[slot]
        self._text_chars -= self._slot_chars.pop(slot, 0)
        self._free.append(slot)

    # Looking up ------------------------------------------------------------------------------
    def sources_of(self, value: Any) -> list[str] | None:
        """The sources of one scalar value, [] for none; None when it is not looked up."""
        if isinstance(value, bool) or value is None:
            return None
        if self._pending:
            self.drain()
        text = normalize(value if isinstance(value, str) else str(value))
        if len(text) < MIN_CHARS:
            return None
        return self._names(self._mask(text))

    def _mask(self, text: str) -> int:
        keys = self._keys
        whole = keys.get(text, 0)
        words = _WORD.findall(text)
        if not words:
            return whole
        if len(words) <= 3:
            return whole | keys.get(" ".join(words), 0)
        mask = 0
        for match in _IDENT.finditer(text):
            for key in _ident_keys(match.group()):
                mask |= keys.get(key, 0)
        shingles = [" ".join(words[i:i + 3]) for i in range(len(words) - 2)]
        need = max(1, min(8, (len(shingles) + 1) // 2))
        counts: dict[int, int] = {}
        for shingle in shingles:
            found = keys.get(shingle, 0)
            while found:
                low = found & -found
                counts[low] = counts.get(low, 0) + 1
                found ^= low
        for bit, n in counts.items():
            if n >= need:
                mask |= bit
        return whole | mask

    def _names(self, mask: int) -> list[str]:
        names = []
        while mask:
            low = mask & -mask
            name = self._slot_name.get(low.bit_length() - 1)
            if name is not None:
                names.append(name)
            mask ^= low
        return names

    def sources_for(self, tool_args: dict[str, Any]) -> dict[str, list[str]]:
        """`arg_sources` of one call: each scalar argument value (in lists and objects too) with
        the sources that hold it. Values not looked up (too short, booleans) are left out."""
        self.drain()
        found: dict[str, list[str]] = {}
        for path, value in _leaves(tool_args):
            sources = self.sources_of(value)
            if sources is not None:
                found[path] = sources
        return found


def _keys_of(text: str) -> set[str]:
    keys: set[str] = set()
    for match in _IDENT.finditer(text):
        keys.update(_ident_keys(match.group()))
    words = _WORD.findall(text)
    keys.update(words)
    keys.update(" ".join(words[i:i + 2]) for i in range(len(words) - 1))
    keys.update(" ".join(words[i:i + 3]) for i in range(len(words) - 2))
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
