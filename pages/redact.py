"""Remove secrets from text before it reaches a ticket, a log line or a model prompt.

Patterns are deliberately specific (a key name that says "secret", a token with a known prefix)
so ordinary log lines survive; a replaced value becomes `[REDACTED]` and the key stays, so the
reader still sees *that* a password was there. `redact` is idempotent: redacting twice changes
nothing further.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

REDACTED = "[REDACTED]"

_KEY_WORDS = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?"
    r"|client[_-]?key(?:[_-]?data)?"
    r"|client[_-]?secret|session[_-]?id)"
)
#: A key is secret when it contains one of the words, e.g. `db_password`, `X-Api-Key`, `access_token`.
#: Patterns match any key and the callbacks check it: linear time, where `[…]*word[…]*` is quadratic.
_SECRET_KEY = re.compile(_KEY_WORDS, re.IGNORECASE)
_KEY = r"[A-Za-z0-9_.-]+"

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|.*\Z)",
    re.DOTALL,
)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]+):[^/\s@]+@"
)
_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization)(?P<sep>\"?\s*[:=]\s*\"?)"
    r"(?:(?P<scheme>bearer|basic|token|digest|negotiate)\s+)?[^\s,;\"']+",
    re.IGNORECASE,
)
_COOKIE_HEADER = re.compile(r"(?P<name>\b(?:set-)?cookie)(?P<sep>\s*:\s*)[^\r\n]+", re.IGNORECASE)
_BEARER = re.compile(r"\b(?P<scheme>[Bb]earer)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}")
_QUOTED_HEAD = re.compile(rf"(?P<key>(?P<q>[\"']){_KEY}(?P=q))(?P<sep>\s*:\s*)")
_QUOTED_VALUE = re.compile(r"\"(?:\\.|[^\"\\\n])*(?:\"|(?=\n)|\Z)|'(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z)")
_PAIR_HEAD = re.compile(rf"(?<![A-Za-z0-9_.-])(?P<key>{_KEY})(?P<sep>\s*=\s*|:\s+)")
_PAIR_VALUE = re.compile(r"\"[^\"\n]*(?:\"|(?=\n)|\Z)|'[^'\n]*(?:'|(?=\n)|\Z)|[^\s&,;\"']+")
_TOKENS = re.compile(
    r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"  # JWT
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}\b|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bglpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bsh[uw]_[A-Za-z0-9_-]{16,}"  # selfheal's own API (shu_) and webhook (shw_) tokens
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)


def _auth_header(m: re.Match[str]) -> str:
    scheme = f"{m.group('scheme')} " if m.group("scheme") else ""
    return f"{m.group('name')}{m.group('sep')}{scheme}{REDACTED}"


def _redact_pairs(head: re.Pattern[str], value: re.Pattern[str], text: str, quoted: bool) -> str:
    """Replace the values of pairs whose key is secret; keys are matched alone, so this is linear."""
    out: list[str] = []
    pos = 0
    while (m := head.search(text, pos)) is not None:
        v = value.match(text, m.end()) if _SECRET_KEY.search(m.group("key")) else None
        if v is None:
            out.append(text[pos : m.end()])
            pos = m.end()
            continue
        q = v.group(0)[0] if quoted else ""
        out.append(f"{text[pos : m.end()]}{q}{REDACTED}{q}")
        pos = v.end()
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, *, emails: bool = False, known: Sequence[str] = ()) -> str:
    """`text` with every recognised secret replaced by `[REDACTED]` (e-mail addresses too if asked).

    `known`: secret values the caller holds (its configured tokens), replaced wherever they appear,
    longest first; a printed token file has no key name or prefix any pattern could catch.
    """
    for value in sorted((v for v in known if len(v) >= 8), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    text = _AUTH_HEADER.sub(_auth_header, text)
    text = _COOKIE_HEADER.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    text = _redact_pairs(_QUOTED_HEAD, _QUOTED_VALUE, text, quoted=True)
    text = _redact_pairs(_PAIR_HEAD, _PAIR_VALUE, text, quoted=False)
    text = _TOKENS.sub(REDACTED, text)
    if emails:
        text = _EMAIL.sub(REDACTED, text)
    return text


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with a marker saying how much was cut."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if len(text) <= limit:
        return text
    marker = f"… [{len(text) - limit} more characters truncated]"
    for _ in range(2):  # the marker's own length changes the count at most once
        keep = max(limit - len(marker), 0)
        marker = f"… [{len(text) - keep} more characters truncated]"
    keep = limit - len(marker)
    if keep <= 0:
        return text[:limit]
    return text[:keep] + marker
