"""Does an MCP tool's description carry hidden instructions? Generic heuristics, each named.

A tool description is text the MCP server writes and the model reads as trusted guidance;
a malicious or compromised server hides instructions there ("tool poisoning"). Each check
below looks for one generic *form* of that, never for a particular attack's wording:

- `invisible`: characters a person reviewing the description does not see but a model reads:
  Unicode tag characters (U+E0000-E007F, which spell ASCII invisibly), bidirectional
  embedding/override/isolate controls (U+202A-202E, U+2066-2069, which reorder what is shown),
  zero-width and other invisible format characters (U+200B, U+2060-2064, U+FEFF, U+180E,
  U+00AD), the supplementary variation selectors (U+E0100-E01EF, which can encode bytes), and
  control characters other than tab and newlines (an ANSI escape hides text in a terminal).
  Not flagged: ZWJ/ZWNJ and LRM/RLM, which ordinary text in several scripts and emoji use.
- `override`: asks the model to ignore, forget or override earlier instructions.
- `conceal`: asks the model to keep something from the user ("do not tell the user").
- `markup`: tags or chat-template tokens that pose as a higher authority to the model
  (<IMPORTANT>, <system>, <instructions>, [INST], <|im_start|>) and HTML comments, which a
  rendered description hides.
- `padding`: a long run of whitespace followed by more text (pushes text out of a reviewer's view).
- `credentials`: names well-known secret files (SSH private keys, cloud credential files).

A flag holds the tool for review (docs/mcp.md); it is not a verdict: an admin who reads the
description and finds it benign approves it (and that exact text is then trusted).
"""

from __future__ import annotations

import re

_TAGS = (0xE0000, 0xE007F)
_VARIATION_SUPPLEMENT = (0xE0100, 0xE01EF)
_BIDI = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_INVISIBLE = frozenset([0x200B, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x180E, 0x00AD])
_ALLOWED_CONTROLS = frozenset("\t\n\r")

_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:previous|prior|preceding|above|earlier|"
    r"all|any|other|system|your)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|rules?|directions?|guidelines?|"
    r"messages?|context)\b", re.IGNORECASE)
_CONCEAL = re.compile(
    r"\b(?:do\s+not|don'?t|never|must\s+not|without)\b[^.\n]{0,30}?\b(?:tell|inform|mention|reveal|notify|alert|"
    r"warn|let)\b[^.\n]{0,25}?\b(?:the\s+)?(?:user|human|operator)s?\b"
    r"|\bwithout\s+(?:the\s+)?(?:user'?s?|human'?s?)\s+(?:knowledge|noticing|knowing|consent)\b"
    r"|\b(?:keep|hide)\s+(?:this|it|these)\b[^.\n]{0,20}?\b(?:secret|hidden)\b[^.\n]{0,20}?\bfrom\b",
    re.IGNORECASE)
_MARKUP = re.compile(
    r"<\s*/?\s*(?:important|system|instructions?|secret|hidden|admin|assistant|prompt|critical|override)\b[^>]{0,80}>"
    r"|<\|[a-z_]{2,30}\|>|\[/?INST\]|<!--", re.IGNORECASE)
_PADDING = re.compile(r"[ \t\r\n]{40,}\S")
_CREDENTIALS = re.compile(r"~?/?\.ssh/|\bid_(?:rsa|ed25519|ecdsa|dsa)\b|\.aws/credentials|\.netrc\b"
                          r"|\.docker/config\.json", re.IGNORECASE)


def _hidden_class(ch: str) -> str | None:
    code = ord(ch)
    if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
        return None if ch in _ALLOWED_CONTROLS else "control characters"
    if code < 0x00AD:
        return None
    if _TAGS[0] <= code <= _TAGS[1]:
        return "Unicode tag characters"
    if code in _BIDI:
        return "bidirectional controls"
    if code in _INVISIBLE:
        return "zero-width or invisible characters"
    if _VARIATION_SUPPLEMENT[0] <= code <= _VARIATION_SUPPLEMENT[1]:
        return "variation selectors that can encode data"
    return None


def hidden_characters(text: str) -> list[str]:
    """Names of the invisible-character classes present in `text` (empty: none)."""
    return sorted({found for ch in text if (found := _hidden_class(ch)) is not None})


def reveal(text: str) -> str:
    """`text` with each hidden character written as [U+XXXX], for a reviewer to see."""
    return "".join(f"[U+{ord(ch):04X}]" if _hidden_class(ch) else ch for ch in text)


def suspicion(description: str) -> list[str]:
    """Why `description` looks like it carries instructions for the model (empty: it does not)."""
    reasons = [f"invisible: {what}" for what in hidden_characters(description)]
    if _OVERRIDE.search(description):
        reasons.append("override: asks the model to ignore earlier instructions")
    if _CONCEAL.search(description):
        reasons.append("conceal: asks the model to keep something from the user")
    if _MARKUP.search(description):
        reasons.append("markup: tags, template tokens or comments addressed to the model")
    if _PADDING.search(description):
        reasons.append("padding: a long run of whitespace hides text that follows")
    if _CREDENTIALS.search(description):
        reasons.append("credentials: names secret key or credential files")
    return reasons
