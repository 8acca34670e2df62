"""A small neutral document model for the incident's ticket page, and the size cap.

`pages.ticket.build_page` builds one `Document` from the incident view; each tracker renders it
in its own format (`pages.render`: Jira wiki markup, Atlassian Document Format, Markdown).
Every string in a document is plain data: the renderers escape it for their format, so no label,
log line or model output can turn into markup. Links and images carry their target separately,
and renderers only link targets that `safe_url` accepts.

`fit` keeps a rendered page under a tracker's limit by shrinking the blocks marked trimmable
(logs first, then the timeline) before anything else, and never returns an over-limit body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

#: Jira's limit on a text field (description, comment), in UTF-16 code units (Java string length):
#: an emoji or any character outside the BMP counts twice.
JIRA_TEXT_LIMIT = 32_767
#: What an image reference may name: the attachments selfheal uploads (`<incident>-graph-<n>.png`).
ATTACHMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(?:png|jpg|jpeg|gif|svg)")
#: Longest single run of text kept once a page has to be cut hard.
_HARD_RUN = 300


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL without spaces or control characters, else None."""
    if not url or len(url) > 2000 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


class Text(BaseModel):
    """A run of text: shown verbatim, optionally bold, as code, or as a link."""

    text: str
    bold: bool = False
    code: bool = False
    link: str | None = None


Runs = list[Text]


class Heading(BaseModel):
    kind: Literal["heading"] = "heading"
    level: int = Field(default=2, ge=1, le=6)
    text: str


class Paragraph(BaseModel):
    kind: Literal["paragraph"] = "paragraph"
    runs: Runs


class Bullets(BaseModel):
    kind: Literal["bullets"] = "bullets"
    items: list[Runs]
    #: Higher is trimmed earlier when the page is too long; 0 is never trimmed.
    trim: int = 0


class Table(BaseModel):
    kind: Literal["table"] = "table"
    header: list[str]
    rows: list[list[Runs]]
    #: Higher is trimmed earlier; rows are dropped from the top (the oldest stay out first).
    trim: int = 0


class Code(BaseModel):
    """A preformatted block (no-format in Jira): logs, queries, patches, model output."""

    kind: Literal["code"] = "code"
    text: str
    #: Higher is trimmed earlier; lines are dropped from the end.
    trim: int = 0


class Image(BaseModel):
    """A picture attached to the ticket, referenced by file name; `alt` names it where it cannot show."""

    kind: Literal["image"] = "image"
    attachment: str
    alt: str = ""


Block = Annotated[Heading | Paragraph | Bullets | Table | Code | Image, Field(discriminator="kind")]


class Document(BaseModel):
    blocks: list[Block] = Field(default_factory=list)

    @classmethod
    def of_text(cls, text: str) -> Document:
        """Plain text (a comment body) as one paragraph per non-empty line, every word data."""
        lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
        return cls(blocks=[Paragraph(runs=[Text(text=line)]) for line in lines])

    def plain_text(self) -> str:
        """The document's words without any markup (for search and tests)."""
        out: list[str] = []
        for b in self.blocks:
            if isinstance(b, Heading):
                out.append(b.text)
            elif isinstance(b, Paragraph):
                out.append("".join(r.text for r in b.runs))
            elif isinstance(b, Bullets):
                out += ["".join(r.text for r in item) for item in b.items]
            elif isinstance(b, Table):
                out.append(" | ".join(b.header))
                out += [" | ".join("".join(r.text for r in cell) for cell in row) for row in b.rows]
            elif isinstance(b, Code):
                out.append(b.text)
            else:
                out.append(b.alt or b.attachment)
        return "\n".join(out)


def _shrink_once(doc: Document, level: int) -> bool:
    """Halve every trimmable block at `level` (rows, items or lines); False when none could shrink."""
    changed = False
    for b in doc.blocks:
        if getattr(b, "trim", 0) != level:
            continue
        if isinstance(b, Table) and b.rows:
            b.rows = b.rows[len(b.rows) - len(b.rows) // 2 :]
            changed = True
        elif isinstance(b, Bullets) and b.items:
            b.items = b.items[: len(b.items) // 2]
            changed = True
        elif isinstance(b, Code) and b.text:
            lines = b.text.split("\n")
            b.text = "\n".join(lines[: len(lines) // 2]) if len(lines) > 1 else b.text[: len(b.text) // 2]
            changed = True
    doc.blocks = [
        b
        for b in doc.blocks
        if not (
            getattr(b, "trim", 0) == level
            and (
                (isinstance(b, Table) and not b.rows)
                or (isinstance(b, Bullets) and not b.items)
                or (isinstance(b, Code) and not b.text)
            )
        )
    ]
    return changed


def _cut_runs(doc: Document, limit: int) -> None:
    """Cut every long string to `limit` characters: the last resort before dropping blocks."""

    def cut(s: str) -> str:
        return s if len(s) <= limit else s[: limit - 1] + "…"

    def cut_runs(runs: Runs) -> None:
        for r in runs:
            r.text = cut(r.text)

    for b in doc.blocks:
        if isinstance(b, Heading):
            b.text = cut(b.text)
        elif isinstance(b, Paragraph):
            cut_runs(b.runs)
        elif isinstance(b, Bullets):
            for item in b.items:
                cut_runs(item)
        elif isinstance(b, Table):
            for row in b.rows:
                for cell in row:
                    cut_runs(cell)
        elif isinstance(b, Code):
            b.text = "\n".join(cut(line) for line in b.text.split("\n")[:20])


def utf16_len(text: str) -> int:
    """The length Jira (Java) measures: UTF-16 code units, not Python's code points."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units, never splitting a surrogate pair."""
    used = 0
    for i, c in enumerate(text):
        used += 2 if ord(c) > 0xFFFF else 1
        if used > limit:
            return text[:i]
    return text


TRIMMED_NOTE = "Page trimmed to fit the tracker's size limit; the full incident is in the workflow."


def fit(doc: Document, render: Callable[[Document], str], limit: int = JIRA_TEXT_LIMIT) -> str:
    """Render `doc` within `limit` UTF-16 units: shrink trimmable blocks (highest `trim` first), then cut
    long strings, then drop blocks from the end. The result is never longer than `limit`."""
    out = render(doc)
    if utf16_len(out) <= limit:
        return out
    work = doc.model_copy(deep=True)
    levels = sorted({getattr(b, "trim", 0) for b in work.blocks if getattr(b, "trim", 0) > 0}, reverse=True)
    note = Paragraph(runs=[Text(text=TRIMMED_NOTE, bold=True)])
    work.blocks.insert(0, note)
    for level in levels:
        while _shrink_once(work, level):
            out = render(work)
            if utf16_len(out) <= limit:
                return out
    _cut_runs(work, _HARD_RUN)
    out = render(work)
    while utf16_len(out) > limit and len(work.blocks) > 1:
        work.blocks.pop()
        out = render(work)
    if utf16_len(out) <= limit:
        return out
    return cut_utf16(render(Document(blocks=[note])), limit)
