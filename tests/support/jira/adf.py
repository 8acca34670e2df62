"""Atlassian Document Format: the validation Jira applies to v3 rich text, and the v2/v3 views of it."""

from __future__ import annotations

from typing import Any

from tests.support.jira.model import JsonDict

#: Node and mark types Jira accepts in an issue description or comment; anything else is a 400.
ADF_NODES = frozenset(
    {
        "paragraph",
        "heading",
        "bulletList",
        "orderedList",
        "listItem",
        "codeBlock",
        "blockquote",
        "rule",
        "table",
        "tableRow",
        "tableHeader",
        "tableCell",
        "text",
        "hardBreak",
        "mediaSingle",
        "media",
        "mediaGroup",
        "panel",
        "mention",
        "emoji",
        "inlineCard",
        "date",
        "status",
        "expand",
        "nestedExpand",
    }
)


ADF_MARKS = frozenset({"strong", "em", "code", "link", "strike", "underline", "textColor", "subsup"})


ADF_REQUIRED = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


def adf_problem(value: Any) -> str | None:
    """Why Jira would refuse `value` as an ADF document, or None when it is one."""
    if not isinstance(value, dict):
        return ADF_REQUIRED
    if value.get("type") != "doc" or value.get("version") != 1:
        return "INVALID_INPUT: the document must be of type doc, version 1"
    if not isinstance(value.get("content"), list):
        return "INVALID_INPUT: doc content must be an array"
    return _adf_node_problem(value.get("content"), "doc")


def _adf_node_problem(nodes: Any, parent: str) -> str | None:
    if not isinstance(nodes, list):
        return f"INVALID_INPUT: content of {parent} must be an array"
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            return f"INVALID_INPUT: a node in {parent} has no type"
        kind = node["type"]
        if kind not in ADF_NODES:
            return f"INVALID_INPUT: unknown node type {kind!r}"
        if kind == "text":
            if not isinstance(node.get("text"), str) or not node["text"]:
                return "INVALID_INPUT: text nodes must have non-empty text"
            marks = node.get("marks") or []
            names = [m.get("type") if isinstance(m, dict) else None for m in marks]
            if any(n not in ADF_MARKS for n in names):
                return f"INVALID_INPUT: unknown mark in {names!r}"
            if "code" in names and set(names) - {"code", "link"}:
                return "INVALID_INPUT: the code mark combines with link only"
            if parent == "codeBlock" and marks:
                return "INVALID_INPUT: text in a codeBlock takes no marks"
            for m in marks:
                if m.get("type") == "link" and not isinstance((m.get("attrs") or {}).get("href"), str):
                    return "INVALID_INPUT: a link mark needs attrs.href"
        if kind == "heading" and (node.get("attrs") or {}).get("level") not in range(1, 7):
            return "INVALID_INPUT: heading level must be 1 to 6"
        if "content" in node:
            problem = _adf_node_problem(node["content"], kind)
            if problem:
                return problem
    return None


def adf_text(value: Any) -> str:
    """An ADF document as the plain text Jira's v2 API shows for it (blocks on their own lines)."""
    if isinstance(value, str) or value is None:
        return value or ""
    out: list[str] = []

    def walk(node: Any) -> str:
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "text":
            return str(node.get("text", ""))
        return "".join(walk(c) for c in node.get("content") or [])

    for block in value.get("content") or []:
        out.append(walk(block))
    return "\n".join(out)


def as_adf(value: Any) -> JsonDict | None:
    """What v3 shows for a value stored through v2 (a string): one paragraph of text."""
    if value is None or isinstance(value, dict):
        return value
    content = [{"type": "paragraph", "content": [{"type": "text", "text": value}]}] if value else []
    return {"version": 1, "type": "doc", "content": content}
