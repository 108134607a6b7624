"""Text normalised for comparing where a value came from (docs/provenance.md).

A value an agent copies from a page should be found there even if the page (or the model)
changed it trivially: case, Unicode compatibility forms (full-width letters, ligatures),
look-alike letters from other scripts, invisible characters, runs of spaces. `normalize` maps
all of those to one form. It is used on both sides (the task and tool outputs when indexed, the
arguments when looked up), so only equality of normalised forms matters, not readability.
"""

from __future__ import annotations

import re
import unicodedata

# Invisible characters: zero-width space/joiners, word joiner and invisible operators, BOM, soft
# hyphen, Mongolian vowel separator, bidi embeddings/overrides/isolates, and the Unicode "tag"
# block (U+E0000-E007F, used to hide text from people but not from models).
_INVISIBLE = [0x00AD, 0x180E, 0xFEFF, *range(0x200B, 0x2010), *range(0x202A, 0x202F),
              *range(0x2060, 0x2065), *range(0x2066, 0x206A), *range(0xE0000, 0xE0080)]

# Letters of other scripts that look like Latin letters (after casefold). Not all of Unicode's
# confusables table: the ones that occur in practice in spoofed addresses and names.
_CONFUSABLE = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w", "ь": "b", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "c",
    # Latin look-alikes outside ASCII that NFKC keeps
    "ı": "i", "ȷ": "j", "ℓ": "l",
}
_TABLE: dict[int, str | None] = {cp: None for cp in _INVISIBLE}
_TABLE.update({ord(k): v for k, v in _CONFUSABLE.items()})
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Casefolded, NFKC, look-alikes mapped to Latin, invisible characters dropped, whitespace
    collapsed to single spaces and stripped."""
    if text.isascii():  # the common case: no Unicode work to do
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKC", text.translate(_TABLE)).casefold().translate(_TABLE)
    return _SPACES.sub(" ", text).strip()
