"""Cheap, bounded feature extraction from one tool call.

Tool arguments are untrusted text of any shape. One walk over them (depth and leaf count
capped) yields everything the baseline and the scorer need, so a call is parsed once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DEPTH = 5
MAX_LEAVES = 64
# Only the head of a long string is searched for addresses: exfiltrated blobs are long, and
# scanning them whole would make the cost grow with the payload.
SCAN_CHARS = 2048
MAX_VALUE_LEN = 128

_EMAIL = re.compile(r"[\w.+-]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
_URL_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://(?:[^/\s@]*@)?([A-Za-z0-9.-]{1,253})")

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

# Words in a tool name that mean "data leaves the agent".
_EGRESS_WORDS = ("send", "mail", "post", "upload", "webhook", "slack", "message", "publish",
                 "share", "transfer", "export", "tweet", "sms", "notify", "wire", "pay")
# Markers of secrets in a tool name or an argument.
_SENSITIVE = ("secret", "credential", "password", "passwd", "token", "api_key", "apikey",
              "private_key", "id_rsa", "id_ed25519", ".ssh", ".env", ".aws", ".pem", "shadow",
              "vault", "keychain", ".netrc", "kubeconfig")


@dataclass(slots=True, frozen=True)
class CallFeatures:
    """What one call looks like to the analytics: computed once per call."""

    tool: str
    destinations: tuple[str, ...]  # e-mail domains and URL hosts, lower case
    recipients: tuple[str, ...]  # values of recipient-like keys and full e-mail addresses
    paths: tuple[str, ...]  # path prefixes: the first two components
    size: int  # characters in all string leaves
    sensitive: str | None  # the first secret marker seen in the tool name or arguments
    egress: bool  # the tool sends data out (by its name, or it has a recipient)


def _path_prefix(s: str) -> str | None:
    if not s or len(s) > 1024 or "\n" in s or " " in s[:64]:
        return None
    head = s[0]
    if head in "/~." or (len(s) > 2 and s[1] == ":" and s[2] in "\\/"):
        parts = [p for p in re.split(r"[\\/]", s) if p]
        if not parts:
            return "/"
        lead = "/" if head == "/" else ""
        # A file directly under the root keeps only its directory.
        keep = parts[:2] if len(parts) > 2 else parts[:1]
        return (lead + "/".join(keep))[:MAX_VALUE_LEN]
    return None


def _sensitive_marker(s: str) -> str | None:
    low = s[:SCAN_CHARS].lower()
    for m in _SENSITIVE:
        if m in low:
            return m
    return None


def extract(tool_name: str, tool_args: object) -> CallFeatures:
    """Walk the arguments once (bounded) and return the call's features."""
    dests: list[str] = []
    recips: list[str] = []
    paths: list[str] = []
    size = 0
    leaves = 0
    sensitive = _sensitive_marker(tool_name)
    stack: list[tuple[str, object, int]] = [("", tool_args, 0)]
    while stack and leaves < MAX_LEAVES:
        key, value, depth = stack.pop()
        if isinstance(value, dict):
            if depth < MAX_DEPTH:
                for k, v in value.items():
                    stack.append((str(k).lower(), v, depth + 1))
            continue
        if isinstance(value, list | tuple):
            if depth < MAX_DEPTH:
                for v in value[:MAX_LEAVES]:
                    stack.append((key, v, depth + 1))
            continue
        leaves += 1
        if not isinstance(value, str):
            size += 8
            continue
        size += len(value)
        head = value[:SCAN_CHARS]
        if "@" in head:
            for m in _EMAIL.finditer(head):
                dests.append(m.group(1).lower())
                recips.append(m.group(0).lower()[:MAX_VALUE_LEN])
        if "://" in head:
            dests.extend(m.group(1).lower().rstrip(".") for m in _URL_HOST.finditer(head))
        if key in _RECIPIENT_KEYS and "@" not in head and "://" not in head:
            recips.append(head[:MAX_VALUE_LEN].strip().lower())
        p = _path_prefix(value)
        if p is None and key in _PATH_KEYS and value:
            p = value.replace("\\", "/").split("/", 1)[0][:MAX_VALUE_LEN] or None
        if p is not None:
            paths.append(p)
        if sensitive is None and (p is not None or key in _NAME_KEYS):
            sensitive = _sensitive_marker(value)
    low = tool_name.lower()
    egress = any(w in low for w in _EGRESS_WORDS) or bool(recips)
    return CallFeatures(
        tool=tool_name[:MAX_VALUE_LEN],
        destinations=tuple(dict.fromkeys(dests))[:8],
        recipients=tuple(dict.fromkeys(recips))[:8],
        paths=tuple(dict.fromkeys(paths))[:8],
        size=size,
        sensitive=sensitive,
        egress=egress,
    )
