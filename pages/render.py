"""Render a page `Document` as Jira wiki markup (REST v2), Atlassian Document Format (REST v3),
Markdown (the local tracker) or HTML (the `/ui` page), with every string in it kept inert.

- Wiki markup: inline text has the markup characters backslash-escaped (a backslash itself becomes
  the `&#92;` entity, since `\\\\` is a line break), newlines folded, and a line that would start like
  `h1.` or `bq.` escaped; preformatted text goes in `{noformat}` with any `{noformat` in it broken up.
- ADF: strings only ever land in `text` nodes; links only from `safe_url` targets.
- Markdown: every ASCII punctuation character in inline text is backslash-escaped; code uses a fence
  longer than any backtick run inside it.
- HTML: every string is entity-escaped (quotes too); links only from `safe_url` targets, opened with
  `rel="noopener noreferrer"`; an image only for a valid attachment name the caller maps to a URL.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

from pages.document import (
    ATTACHMENT_NAME,
    JIRA_TEXT_LIMIT,
    Bullets,
    Code,
    Document,
    Heading,
    Paragraph,
    Runs,
    Table,
    Text,
    fit,
    safe_url,
)

PageFormat = Literal["wiki", "adf", "markdown"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INLINE_WS = re.compile(r"\s*[\r\n]+\s*")


def _inline(text: str) -> str:
    """One line of plain text: control characters dropped, line breaks folded into spaces."""
    return _CONTROL.sub("", _INLINE_WS.sub(" ", text))


def _block_text(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _link_target(url: str | None) -> str | None:
    """A safe URL with the characters that would end a link in wiki or Markdown percent-encoded."""
    ok = safe_url(url)
    if ok is None:
        return None
    return quote(ok, safe="/:?#@!$&'*+,;=%-._~")


# --------------------------------------------------------------------------------------- wiki markup

_WIKI_SPECIAL = set("*_?-+^~{}[]|!#()")
_WIKI_LINE_START = re.compile(r"^(h[1-6]|bq)\.", re.IGNORECASE)
_NOFORMAT = re.compile(r"\{(\s*noformat)", re.IGNORECASE)


def wiki_escape(text: str) -> str:
    out: list[str] = []
    for ch in _inline(text):
        if ch == "\\":
            out.append("&#92;")
        elif ch in _WIKI_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _wiki_runs(runs: Runs) -> str:
    parts: list[str] = []
    for r in runs:
        text = wiki_escape(r.text)
        if not text.strip():
            parts.append(text)
            continue
        target = _link_target(r.link)
        if r.code:
            text = "{{" + text + "}}"
        if r.bold:
            lead, core, trail = _split_ws(text)
            text = f"{lead}*{core}*{trail}"
        if target is not None:
            text = f"[{text}|{target}]"
        parts.append(text)
    line = "".join(parts)
    return _WIKI_LINE_START.sub(lambda m: m.group(1) + "\\.", line)


def _split_ws(text: str) -> tuple[str, str, str]:
    core = text.strip()
    start = text.index(core[0]) if core else 0
    return text[:start], core, text[start + len(core) :]


def _wiki_noformat(text: str) -> str:
    return "{noformat}\n" + _NOFORMAT.sub(r"{ \1", _block_text(text)) + "\n{noformat}"


def render_wiki_text(text: str) -> str:
    """Plain text (a comment body) as wiki markup that shows it verbatim, line breaks kept."""
    lines = _block_text(text).split("\n")
    return "\n".join(_WIKI_LINE_START.sub(lambda m: m.group(1) + "\\.", wiki_escape(line)) for line in lines)


def render_wiki(doc: Document) -> str:
    out: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"h{b.level}. {wiki_escape(b.text)}")
        elif isinstance(b, Paragraph):
            out.append(_wiki_runs(b.runs))
        elif isinstance(b, Bullets):
            out.append("\n".join("* " + _wiki_runs(item) for item in b.items))
        elif isinstance(b, Table):
            lines = ["||" + "||".join(wiki_escape(h) or " " for h in b.header) + "||"]
            lines += ["|" + "|".join(_wiki_runs(cell) or " " for cell in row) + "|" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Code):
            out.append(_wiki_noformat(b.text))
        elif ATTACHMENT_NAME.fullmatch(b.attachment):
            out.append(f"!{b.attachment}!")
        else:
            out.append(wiki_escape(f"(attachment: {b.alt or b.attachment})"))
    return "\n\n".join(out)


# ------------------------------------------------------------------------------------------- ADF


def _adf_text(r: Text) -> dict[str, Any] | None:
    if not r.text:
        return None
    node: dict[str, Any] = {"type": "text", "text": _CONTROL.sub("", r.text)}
    if not node["text"]:
        return None
    marks: list[dict[str, Any]] = []
    # The code mark may only be combined with a link, so code wins over bold.
    if r.code:
        marks.append({"type": "code"})
    elif r.bold:
        marks.append({"type": "strong"})
    target = safe_url(r.link)
    if target is not None:
        marks.append({"type": "link", "attrs": {"href": target}})
    if marks:
        node["marks"] = marks
    return node


def _adf_para(runs: Runs) -> dict[str, Any]:
    content = [n for n in (_adf_text(r) for r in runs) if n is not None]
    return {"type": "paragraph", "content": content}


def _adf_cell(kind: str, runs: Runs) -> dict[str, Any]:
    return {"type": kind, "attrs": {}, "content": [_adf_para(runs)]}


def render_adf(doc: Document) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            content.append(
                {
                    "type": "heading",
                    "attrs": {"level": b.level},
                    "content": _adf_para([Text(text=b.text)])["content"],
                }
            )
        elif isinstance(b, Paragraph):
            content.append(_adf_para(b.runs))
        elif isinstance(b, Bullets):
            if b.items:
                content.append(
                    {
                        "type": "bulletList",
                        "content": [{"type": "listItem", "content": [_adf_para(i)]} for i in b.items],
                    }
                )
        elif isinstance(b, Table):
            rows = [
                {"type": "tableRow", "content": [_adf_cell("tableHeader", [Text(text=h)]) for h in b.header]}
            ]
            rows += [
                {"type": "tableRow", "content": [_adf_cell("tableCell", c) for c in row]} for row in b.rows
            ]
            content.append(
                {
                    "type": "table",
                    "attrs": {"isNumberColumnEnabled": False, "layout": "default"},
                    "content": rows,
                }
            )
        elif isinstance(b, Code):
            text = _block_text(b.text)
            node: dict[str, Any] = {"type": "codeBlock", "attrs": {}}
            if text:
                node["content"] = [{"type": "text", "text": text}]
            content.append(node)
        else:
            # ADF embeds media by Media Services id, which attachment uploads do not return: name it.
            content.append(_adf_para([Text(text="attached graph: "), Text(text=b.attachment, code=True)]))
    return {"version": 1, "type": "doc", "content": content}


def adf_json(doc: Document) -> str:
    return json.dumps(render_adf(doc), separators=(",", ":"), ensure_ascii=False)


def adf_plain_text(node: Any) -> str:
    """All text in an ADF node, for finding markers such as the comment dedup reference."""
    if isinstance(node, dict):
        own = node.get("text") if node.get("type") == "text" and isinstance(node.get("text"), str) else ""
        return str(own) + "".join(adf_plain_text(c) for c in node.get("content") or [])
    if isinstance(node, list):
        return "".join(adf_plain_text(c) for c in node)
    return ""


# -------------------------------------------------------------------------------------- Markdown

#: Characters with inline meaning in CommonMark/GFM; `:`, `.`, `,` and the like stay readable.
_MD_SPECIAL = set("\\`*_{}[]()<>#!|~&")
#: A line starting like a list item, thematic break or setext underline.
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))")
_BACKTICKS = re.compile(r"`+")


def markdown_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in _inline(text))


def _md_line(line: str) -> str:
    """Escape what would make the start of a line a list, break or heading underline."""
    m = _MD_LINE_START.match(line)
    if m is None:
        return line
    head = m.group(2)
    if head[0].isdigit():
        end = m.end()
        return line[:end] + "\\" + line[end:]
    return line[: m.start(2)] + "\\" + line[m.start(2) :]


def _fence(text: str, char: str, least: int) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0) if char == "`" else 0
    return char * max(least, longest + 1)


def _md_runs(runs: Runs, in_table: bool = False) -> str:
    parts: list[str] = []
    for r in runs:
        if r.code:
            raw = _inline(r.text)
            if in_table:
                # GFM splits cells on `|` even inside code spans unless it is escaped.
                raw = raw.replace("|", "\\|")
            if not raw:
                continue
            fence = _fence(raw, "`", 1)
            text = f"{fence} {raw} {fence}"
        else:
            text = markdown_escape(r.text)
            if r.bold and text.strip():
                lead, core, trail = _split_ws(text)
                text = f"{lead}**{core}**{trail}"
        target = _link_target(r.link)
        if target is not None and text.strip():
            text = f"[{text}](<{target.replace('<', '%3C').replace('>', '%3E')}>)"
        parts.append(text)
    return "".join(parts)


def render_markdown(doc: Document) -> str:
    out: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + markdown_escape(b.text))
        elif isinstance(b, Paragraph):
            out.append(_md_line(_md_runs(b.runs).lstrip()))
        elif isinstance(b, Bullets):
            out.append("\n".join("- " + _md_line(_md_runs(item).lstrip()) for item in b.items))
        elif isinstance(b, Table):
            lines = [
                "| " + " | ".join(markdown_escape(h) for h in b.header) + " |",
                "|" + "---|" * len(b.header),
            ]
            lines += [
                "| " + " | ".join(_md_runs(cell, in_table=True) for cell in row) + " |" for row in b.rows
            ]
            out.append("\n".join(lines))
        elif isinstance(b, Code):
            text = _block_text(b.text)
            fence = _fence(text, "`", 3)
            out.append(f"{fence}text\n{text}\n{fence}")
        elif ATTACHMENT_NAME.fullmatch(b.attachment):
            out.append(f"![{markdown_escape(b.alt or b.attachment)}]({b.attachment})")
        else:
            out.append(markdown_escape(f"(attachment: {b.alt or b.attachment})"))
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ HTML


def _h(text: str) -> str:
    return html.escape(_CONTROL.sub("", text), quote=True)


def _html_runs(runs: Runs) -> str:
    parts: list[str] = []
    for r in runs:
        text = _h(_inline(r.text))
        if r.code:
            text = f"<code>{text}</code>"
        if r.bold:
            text = f"<strong>{text}</strong>"
        target = safe_url(r.link)
        if target is not None and text:
            text = f'<a href="{_h(target)}" rel="noopener noreferrer">{text}</a>'
        parts.append(text)
    return "".join(parts)


def render_html(doc: Document, attachment_url: Callable[[str], str | None] = lambda _: None) -> str:
    """The page as an HTML fragment; `attachment_url` maps an attachment's name to where it is served
    (None: named, not shown). Not size-capped: the page is read in the browser, not stored."""
    out: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_h(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{_html_runs(b.runs)}</p>")
        elif isinstance(b, Bullets):
            items = "".join(f"<li>{_html_runs(item)}</li>" for item in b.items)
            out.append(f"<ul>{items}</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_h(h)}</th>" for h in b.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_html_runs(cell)}</td>" for cell in row) + "</tr>" for row in b.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Code):
            out.append(f"<pre>{_h(_block_text(b.text))}</pre>")
        else:
            url = attachment_url(b.attachment) if ATTACHMENT_NAME.fullmatch(b.attachment) else None
            alt = _h(b.alt or b.attachment)
            if url is None:
                out.append(f"<p>(attachment: {alt})</p>")
            else:
                out.append(
                    f'<figure><img src="{_h(url)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
                )
    return "\n".join(out)


# -------------------------------------------------------------------------------------- entry points


def render(doc: Document, fmt: PageFormat, limit: int = JIRA_TEXT_LIMIT) -> str:
    """The page in `fmt`, at most `limit` characters (ADF as compact JSON)."""
    if fmt == "wiki":
        return fit(doc, render_wiki, limit)
    if fmt == "adf":
        return fit(doc, adf_json, limit)
    return fit(doc, render_markdown, limit)


def render_adf_fitted(doc: Document, limit: int = JIRA_TEXT_LIMIT) -> dict[str, Any]:
    """The ADF document, its JSON at most `limit` characters."""
    value: dict[str, Any] = json.loads(render(doc, "adf", limit))
    return value
