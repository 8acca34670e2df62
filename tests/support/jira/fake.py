"""An in-memory Jira (REST API v2) on a real socket, for tests that drive the real `jira` client.

Mocks of the `jira` library only prove we call the library; this fake proves the requests it sends
are ones Jira accepts. It rejects what Jira rejects (bad project, priority or label, a newline in a
summary, an unknown transition, JQL it cannot parse, an attachment upload without the XSRF header,
bad credentials) with Jira's status codes and error JSON, and it can misbehave on demand
(`fail_next`, `hold_create`) and send Jira's outgoing webhooks (`add_comment_as`, `transition_as`).

Usage::

    with JiraFake(users={"bot": "token"}) as fake:
        client = JIRA(fake.url, basic_auth=("bot", "token"))

The default workflow has global transitions (named like their target status) to "To Do" (category
new), "In Progress", "Approved", "Rejected" (indeterminate: still open, as in LocalTracker) and
"Done" (done, resolution Done); pass `workflow=` for another. Real Jira also sends webhooks for
changes made through the REST API, i.e. by our own bot: `configure_webhook(..., api_events=True)`.

Limits, on purpose: no screens or permissions beyond authentication, JQL restricted to the clauses
in `_JQL_FIELDS` with AND/OR/NOT/parentheses, `=`, `!=`, `IN`, `NOT IN`, `IS [NOT] EMPTY`, `~` on
text, date comparisons and `currentUser()`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.parser
import email.policy
import functools
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import httpx

JsonDict = dict[str, Any]

API = r"/rest/api/(?:2|latest)"
#: REST v3 (Jira Cloud): the same resources, rich text (descriptions, comment bodies) as ADF.
API3 = r"/rest/api/3"
PRIORITIES: dict[str, str] = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
ISSUE_TYPES: dict[str, str] = {"Bug": "1", "Task": "3"}
RESOLUTIONS: dict[str, str] = {"Done": "10000", "Won't Do": "10001"}
STATUS_CATEGORIES: dict[str, JsonDict] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."


@dataclass(frozen=True)
class WorkflowStatus:
    """A status of the single workflow, and the global transition that leads to it."""

    name: str
    id: str
    category: str
    transition_id: str
    resolution: str | None = None


DEFAULT_WORKFLOW: tuple[WorkflowStatus, ...] = (
    WorkflowStatus("To Do", "10000", "new", "11"),
    WorkflowStatus("In Progress", "3", "indeterminate", "21"),
    WorkflowStatus("Approved", "10002", "indeterminate", "41"),
    WorkflowStatus("Rejected", "10003", "indeterminate", "51"),
    WorkflowStatus("Done", "10001", "done", "31", resolution="Done"),
)


@dataclass(frozen=True)
class _FieldDef:
    id: str
    name: str
    clause_names: tuple[str, ...]
    schema: JsonDict | None
    navigable: bool = True
    orderable: bool = True
    searchable: bool = True
    rendered: bool = True


FIELDS: tuple[_FieldDef, ...] = (
    _FieldDef("summary", "Summary", ("summary",), {"type": "string", "system": "summary"}),
    _FieldDef("description", "Description", ("description",), {"type": "string", "system": "description"}),
    _FieldDef("labels", "Labels", ("labels",), {"type": "array", "items": "string", "system": "labels"}),
    _FieldDef("priority", "Priority", ("priority",), {"type": "priority", "system": "priority"}),
    _FieldDef("status", "Status", ("status",), {"type": "status", "system": "status"}, orderable=False),
    _FieldDef(
        "statusCategory", "Status Category", ("statusCategory",), None, orderable=False, rendered=False
    ),
    _FieldDef("resolution", "Resolution", ("resolution",), {"type": "resolution", "system": "resolution"}),
    _FieldDef(
        "resolutiondate",
        "Resolved",
        ("resolutiondate", "resolved"),
        {"type": "datetime", "system": "resolutiondate"},
        orderable=False,
    ),
    _FieldDef("assignee", "Assignee", ("assignee",), {"type": "user", "system": "assignee"}),
    _FieldDef("reporter", "Reporter", ("reporter",), {"type": "user", "system": "reporter"}),
    _FieldDef("issuetype", "Issue Type", ("issuetype", "type"), {"type": "issuetype", "system": "issuetype"}),
    _FieldDef("project", "Project", ("project",), {"type": "project", "system": "project"}, orderable=False),
    _FieldDef(
        "created",
        "Created",
        ("created", "createdDate"),
        {"type": "datetime", "system": "created"},
        orderable=False,
    ),
    _FieldDef(
        "updated",
        "Updated",
        ("updated", "updatedDate"),
        {"type": "datetime", "system": "updated"},
        orderable=False,
    ),
    _FieldDef(
        "statuscategorychangedate",
        "Status Category Changed",
        ("statusCategoryChangedDate",),
        {"type": "datetime", "system": "statuscategorychangedate"},
        orderable=False,
    ),
    _FieldDef(
        "comment", "Comment", ("comment",), {"type": "comments-page", "system": "comment"}, navigable=False
    ),
    _FieldDef(
        "attachment",
        "Attachment",
        ("attachments",),
        {"type": "array", "items": "attachment", "system": "attachment"},
        navigable=False,
        searchable=False,
    ),
    _FieldDef(
        "issuekey",
        "Key",
        ("id", "issue", "issuekey", "key"),
        None,
        orderable=False,
        searchable=False,
        rendered=False,
    ),
)
#: What PUT/POST may write; anything else is "not on the appropriate screen, or unknown" in Jira.
_WRITABLE = {"summary", "description", "labels", "priority", "assignee", "reporter", "project", "issuetype"}


# ------------------------------------------------------------------------------------------- ADF

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


# --------------------------------------------------------------------------------------------- state


@dataclass
class _Comment:
    id: int
    author: str
    body: str | JsonDict
    created: datetime
    updated: datetime


@dataclass
class _Attachment:
    id: int
    filename: str
    author: str
    created: datetime
    data: bytes
    mime_type: str


@dataclass
class _Issue:
    id: int
    key: str
    project: str
    issuetype: str
    summary: str
    description: str | JsonDict | None
    labels: list[str]
    priority: str
    status: str
    reporter: str
    created: datetime
    assignee: str | None = None
    resolution: str | None = None
    resolutiondate: datetime | None = None
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    status_changed: datetime = field(default_factory=lambda: datetime.now(UTC))
    comments: list[_Comment] = field(default_factory=list)
    attachments: list[_Attachment] = field(default_factory=list)
    remote_links: list[JsonDict] = field(default_factory=list)


@dataclass
class WebhookDelivery:
    """One outgoing webhook POST as the fake sent it (the body is byte-exact)."""

    url: str
    event: JsonDict
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


@dataclass
class _Webhook:
    url: str
    secret: str | None
    token_in_url: str | None
    events: frozenset[str]
    api_events: bool
    comment_also_updates: bool


@dataclass
class _FailRule:
    status: int
    count: int
    retry_after: int
    method: str | None
    path: re.Pattern[str] | None


class HeldCreate:
    """One `POST /issue` that creates its issue, then stalls its HTTP response until released.

    That is what a worker killed mid-activity looks like from Jira's side: the ticket exists but the
    caller never learned its key.
    """

    def __init__(self) -> None:
        self.created = threading.Event()
        self.released = threading.Event()
        self.key: str | None = None

    def wait_created(self, timeout: float = 10.0) -> str:
        """Block until the held request has created its issue; return the key."""
        if not self.created.wait(timeout) or self.key is None:
            raise TimeoutError("no issue was created while the hold was armed")
        return self.key

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> HeldCreate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _HTTPError(Exception):
    """Raised inside a handler; becomes the error response Jira would send."""

    def __init__(
        self, status: int, payload: JsonDict | str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


def _fail(status: int, messages: Sequence[str] = (), errors: Mapping[str, str] | None = None) -> NoReturn:
    raise _HTTPError(status, {"errorMessages": list(messages), "errors": dict(errors or {})})


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# ----------------------------------------------------------------------------------------------- JQL


class JQLError(Exception):
    """A JQL query Jira would answer with 400; the message is Jira's."""


_RESERVED_CHARS = set("+.,;?|*/%^$#@[]")
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_OPERATORS = ("!=", "!~", ">=", "<=", "=", "~", ">", "<")
_VALID_OPS = (
    "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'."
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # word | str | op | ( | ) | , | eof
    value: str
    pos: int  # 1-based character


def _tokenize(jql: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(jql)
    while i < n:
        c = jql[i]
        if c.isspace():
            i += 1
        elif c in "\"'":
            quote_char, j, buf = c, i + 1, []
            while j < n and jql[j] != quote_char:
                if jql[j] == "\\" and j + 1 < n:
                    nxt = jql[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                    j += 2
                    continue
                buf.append(jql[j])
                j += 1
            if j >= n:
                raise JQLError(
                    f"Error in the JQL Query: The quoted string '{jql[i + 1 :]}' has not been completed. "
                    f"(line 1, character {i + 1})"
                )
            toks.append(_Tok("str", "".join(buf), i + 1))
            i = j + 1
        elif c in "(),":
            toks.append(_Tok(c, c, i + 1))
            i += 1
        elif any(jql.startswith(op, i) for op in _OPERATORS):
            op = next(op for op in _OPERATORS if jql.startswith(op, i))
            toks.append(_Tok("op", op, i + 1))
            i += len(op)
        elif c.isalnum() or c in "_-:":
            j = i
            while j < n and (jql[j].isalnum() or jql[j] in "_-:"):
                j += 1
            toks.append(_Tok("word", jql[i:j], i + 1))
            i = j
        else:
            if c in _RESERVED_CHARS:
                raise JQLError(
                    f"Error in the JQL Query: The character '{c}' is a reserved JQL character. You must "
                    f"enclose it in a string or use the escape '\\u{ord(c):04x}' instead. "
                    f"(line 1, character {i + 1})"
                )
            raise JQLError(f"Error in the JQL Query: Unexpected character '{c}'. (line 1, character {i + 1})")
    toks.append(_Tok("eof", "", n + 1))
    return toks


@dataclass(frozen=True)
class _Value:
    text: str  # "" for EMPTY
    empty: bool = False
    function: str | None = None


@dataclass(frozen=True)
class _Clause:
    field: str
    op: str  # = != ~ !~ < <= > >= in "not in" is "is not"
    values: tuple[_Value, ...]
    pos: int


@dataclass(frozen=True)
class _BoolNode:
    op: str  # and | or | not
    children: tuple[_Node, ...]


_Node = _Clause | _BoolNode


@dataclass(frozen=True)
class _Query:
    where: _Node | None
    order: tuple[tuple[str, bool], ...]  # (field, descending)


class _Parser:
    def __init__(self, jql: str) -> None:
        self.toks = _tokenize(jql)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_kw(self, tok: _Tok, word: str) -> bool:
        return tok.kind == "word" and tok.value.lower() == word

    @staticmethod
    def _expecting(what: str, tok: _Tok, hint: str = "") -> JQLError:
        """Jira's syntax error: "Expecting X but got 'Y'. (line 1, character N)"."""
        got = "end of query" if tok.kind == "eof" else f"'{tok.value}'"
        where = "" if tok.kind == "eof" else f" (line 1, character {tok.pos})"
        extra = f" {hint.format(got=got)}" if hint and tok.kind != "eof" else ""
        return JQLError(f"Error in the JQL Query: Expecting {what} but got {got}.{extra}{where}")

    def _is_name(self, tok: _Tok) -> bool:
        return tok.kind == "str" or (tok.kind == "word" and tok.value.lower() not in _KEYWORDS)

    def _expect(self, kind: str) -> None:
        tok = self.next()
        if tok.kind != kind:
            raise self._expecting(f"'{kind}'", tok)

    def parse(self) -> _Query:
        where: _Node | None = None
        if self.peek().kind != "eof" and not self.is_kw(self.peek(), "order"):
            where = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.is_kw(self.peek(), "order"):
            self.next()
            by = self.next()
            if not self.is_kw(by, "by"):
                raise self._expecting("'BY'", by)
            while True:
                tok = self.next()
                if not self._is_name(tok):
                    raise self._expecting("a field name", tok)
                desc = False
                if self.is_kw(self.peek(), "asc") or self.is_kw(self.peek(), "desc"):
                    desc = self.next().value.lower() == "desc"
                order.append((tok.value, desc))
                if self.peek().kind != ",":
                    break
                self.next()
        if self.peek().kind != "eof":
            raise self._expecting("either 'OR' or 'AND'", self.peek())
        return _Query(where, tuple(order))

    def or_expr(self) -> _Node:
        nodes = [self.and_expr()]
        while self.is_kw(self.peek(), "or"):
            self.next()
            nodes.append(self.and_expr())
        return nodes[0] if len(nodes) == 1 else _BoolNode("or", tuple(nodes))

    def and_expr(self) -> _Node:
        nodes = [self.not_expr()]
        while self.is_kw(self.peek(), "and"):
            self.next()
            nodes.append(self.not_expr())
        return nodes[0] if len(nodes) == 1 else _BoolNode("and", tuple(nodes))

    def not_expr(self) -> _Node:
        tok = self.peek()
        if self.is_kw(tok, "not"):
            self.next()
            return _BoolNode("not", (self.not_expr(),))
        if tok.kind == "(":
            self.next()
            node = self.or_expr()
            self._expect(")")
            return node
        return self.clause()

    def clause(self) -> _Clause:
        tok = self.next()
        if not self._is_name(tok):
            raise self._expecting(
                "a field name", tok, "You must surround {got} in quotation marks to use it as a field name."
            )
        op_tok = self.next()
        if op_tok.kind == "op":
            op = op_tok.value
        elif self.is_kw(op_tok, "in"):
            op = "in"
        elif self.is_kw(op_tok, "not") and self.is_kw(self.peek(), "in"):
            self.next()
            op = "not in"
        elif self.is_kw(op_tok, "is"):
            op = "is"
            if self.is_kw(self.peek(), "not"):
                self.next()
                op = "is not"
        else:
            raise self._expecting("operator", op_tok, _VALID_OPS)
        if op in ("in", "not in"):
            self._expect("(")
            values = [self.operand()]
            while self.peek().kind == ",":
                self.next()
                values.append(self.operand())
            self._expect(")")
            return _Clause(tok.value, op, tuple(values), tok.pos)
        value_tok = self.peek()
        value = self.operand()
        if op in ("is", "is not") and not value.empty:
            raise self._expecting("'EMPTY' or 'NULL'", value_tok)
        return _Clause(tok.value, op, (value,), tok.pos)

    def operand(self) -> _Value:
        tok = self.next()
        if tok.kind == "str":
            return _Value(tok.value)
        if tok.kind != "word":
            raise self._expecting("either a value, list or function", tok)
        low = tok.value.lower()
        if low in ("empty", "null"):
            return _Value("", empty=True)
        if low in _KEYWORDS:
            raise self._expecting(
                "either a value, list or function",
                tok,
                "You must surround {got} in quotation marks to use it as a value.",
            )
        if self.peek().kind == "(":
            self.next()
            if self.next().kind != ")":
                raise JQLError(f"Unable to find JQL function '{tok.value}()'.")
            return _Value("", function=low)
        return _Value(tok.value)


def parse_jql(jql: str) -> _Query:
    """Parse a JQL string or raise `JQLError` with the message Jira would give."""
    return _Parser(jql).parse()


_RELATIVE = re.compile(r"^([+-]?)(\d+)([wdhm])$")


def _parse_date(text: str, now: datetime) -> datetime | None:
    m = _RELATIVE.match(text.strip())
    if m:
        units = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
        secs = int(m.group(2)) * units[m.group(3)]
        return now - timedelta(seconds=secs) if m.group(1) == "-" else now + timedelta(seconds=secs)
    for fmt in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
    return None


# ---------------------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
    server: _Server

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.fake._dispatch(self.command, self.path, headers, body)
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if resp.status != 204:
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body and resp.status != 204:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (timeout, killed worker)
            self.close_connection = True

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own request log (`JiraFake.requests`)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: JiraFake) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


_Route = tuple[str, re.Pattern[str], Callable[..., _Response], bool]


class JiraFake:
    """A Jira Server/Cloud stand-in on 127.0.0.1; see the module docstring.

    `users` maps user name to API token (basic auth `user:token`) — the token alone also works as a
    Bearer PAT. `people` are further users that exist (assignable, can comment via the helpers) but
    cannot log in. `cloud=True` makes `serverInfo` say Cloud and retires `GET /search` with 410, as
    Jira Cloud did; otherwise `GET /search/jql` is 404, as on Server/Data Center. `search_lag_seconds`
    keeps new issues out of search results for that long, like Jira's asynchronous index.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        projects: Sequence[str] = ("OPS",),
        people: Sequence[str] = (),
        cloud: bool = False,
        workflow: Sequence[WorkflowStatus] = DEFAULT_WORKFLOW,
        search_lag_seconds: float = 0.0,
        hold_timeout_seconds: float = 120.0,
    ) -> None:
        self._tokens: dict[str, str] = dict(users if users is not None else {"bot": "token"})
        self._people: set[str] = set(self._tokens) | set(people)
        self._projects: dict[str, JsonDict] = {
            key: {"id": str(10000 + i), "key": key, "name": f"{key} project"}
            for i, key in enumerate(projects)
        }
        self.cloud = cloud
        self._workflow: dict[str, WorkflowStatus] = {s.name: s for s in workflow}
        self._search_lag = search_lag_seconds
        self._hold_timeout = hold_timeout_seconds
        self._lock = threading.RLock()
        self._issues: dict[str, _Issue] = {}
        self._counters: dict[str, int] = {}
        self._ids = itertools.count(10000)
        self._requests: list[tuple[str, str]] = []
        self._fail_rules: list[_FailRule] = []
        self._holds: list[HeldCreate] = []
        self._active_holds: list[HeldCreate] = []
        self._webhook: _Webhook | None = None
        self._deliveries: list[WebhookDelivery] = []
        self._server: _Server | None = None
        self._base_url = ""
        self._thread: threading.Thread | None = None
        self._routes: list[_Route] = self._build_routes()

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> JiraFake:
        server = _Server(self)
        self._server = server
        host, port = server.server_address[:2]
        self._base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="jira-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_create()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JiraFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (what JiraSettings.url should hold)."""
        if not self._base_url:
            raise RuntimeError("JiraFake was never started; use it as a context manager")
        return self._base_url

    # -------------------------------------------------------------------------- test switches

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        *,
        retry_after: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` REST calls (optionally only `method` / paths matching regex `path`)
        with `status`; 429 carries `Retry-After: retry_after` like Jira Cloud's rate limiter."""
        with self._lock:
            self._fail_rules.append(
                _FailRule(
                    status,
                    count,
                    retry_after,
                    method.upper() if method else None,
                    re.compile(path) if path else None,
                )
            )

    def hold_create(self) -> HeldCreate:
        """Arm a hold for the next `POST /issue`: the issue is created, the response stalls until
        `release_create()` (or the returned handle's `release()` / context exit)."""
        held = HeldCreate()
        with self._lock:
            self._holds.append(held)
        return held

    def release_create(self) -> None:
        """Let every held create answer, and disarm holds that have not fired yet."""
        with self._lock:
            holds = self._holds + self._active_holds
            self._holds = []
            self._active_holds = []
        for held in holds:
            held.release()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request seen, as (method, path without query), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def count(self, method: str, path_regex: str) -> int:
        """How many requests matched `method` and (fully) `path_regex`."""
        pattern = re.compile(path_regex)
        return sum(1 for m, p in self.requests if m == method.upper() and pattern.fullmatch(p))

    @property
    def issues(self) -> dict[str, JsonDict]:
        """Snapshot: key → the issue as `GET /issue/{key}` returns it."""
        with self._lock:
            return {key: self._issue_json(iss, lambda _f: True) for key, iss in self._issues.items()}

    def comments(self, key: str, *, v3: bool = False) -> list[JsonDict]:
        with self._lock:
            return [self._comment_json(self._issues[key], c, v3=v3) for c in self._issues[key].comments]

    def issue_v3(self, key: str) -> JsonDict:
        """The issue as `GET /rest/api/3/issue/{key}` returns it (description as ADF)."""
        with self._lock:
            return self._issue_json(self._issues[key], lambda _f: True, v3=True)

    def remote_links(self, key: str) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(self._issues[key].remote_links)

    def attachments(self, key: str) -> list[tuple[str, bytes]]:
        """(filename, content) of each attachment on the issue."""
        with self._lock:
            return [(a.filename, a.data) for a in self._issues[key].attachments]

    def account_id(self, user: str) -> str:
        """The Cloud-style accountId the fake gives `user`."""
        return "5b10a2844c20165700ede" + hashlib.sha1(user.encode()).hexdigest()[:8]

    def add_person(self, user: str) -> None:
        """Make a user exist (assignable, searchable) without giving them a login."""
        with self._lock:
            self._people.add(user)

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    # ------------------------------------------------------------------------------- webhooks

    def configure_webhook(
        self,
        url: str,
        secret: str | None = None,
        token_in_url: str | None = None,
        *,
        events: Sequence[str] = ("comment_created", "jira:issue_updated"),
        api_events: bool = False,
        comment_also_updates: bool = False,
    ) -> None:
        """Register Jira's outgoing webhook.

        `secret` signs each body (`X-Hub-Signature: sha256=<hmac>`), `token_in_url` appends
        `?token=` (how a Server admin without signing passes a shared secret). Real Jira also fires
        webhooks for changes made through the REST API, i.e. by our own bot: `api_events=True` does
        that too (delivered from a background thread, see `deliveries`). Real Jira also sends a
        `jira:issue_updated` (`issue_commented`) next to `comment_created`; `comment_also_updates=True`
        does that.
        """
        with self._lock:
            self._webhook = _Webhook(
                url, secret, token_in_url, frozenset(events), api_events, comment_also_updates
            )

    def add_comment_as(self, key: str, user: str, body: str) -> int | None:
        """A human comments in the UI; returns the webhook receiver's status (None: no webhook)."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            comment = self._add_comment(iss, user, body)
            events = self._comment_events(iss, comment, user)
        return self._send_all(events)

    def transition_as(self, key: str, user: str, status_name: str) -> int | None:
        """A human moves the issue in the UI; returns the webhook receiver's status (None: no webhook)."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            target = self._status_by_name(status_name)
            if target is None:
                raise ValueError(f"no status {status_name!r}; workflow has {sorted(self._workflow)}")
            if target.name == iss.status:
                raise ValueError(f"{key} is already in {target.name!r}")
            event = self._do_transition(iss, target, user)
        return self._send_all([event])

    def redeliver_last(self) -> int | None:
        """Send the last delivery again, byte for byte, same `X-Atlassian-Webhook-Identifier`."""
        with self._lock:
            if not self._deliveries:
                raise RuntimeError("nothing was delivered yet")
            last = self._deliveries[-1]
        headers = dict(last.headers)
        headers["X-Atlassian-Webhook-Retry"] = str(int(headers.get("X-Atlassian-Webhook-Retry", "0")) + 1)
        return self._post_webhook(WebhookDelivery(last.url, last.event, last.body, headers))

    def _send_all(self, events: list[JsonDict]) -> int | None:
        status: int | None = None
        for i, event in enumerate(events):
            delivery = self._prepare_delivery(event)
            if delivery is None:
                continue
            result = self._post_webhook(delivery)
            if i == 0 or status is None:
                status = result
        return status

    def _prepare_delivery(self, event: JsonDict) -> WebhookDelivery | None:
        with self._lock:
            hook = self._webhook
        if hook is None or event["webhookEvent"] not in hook.events:
            return None
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4().int)[:19],
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if hook.secret:
            digest = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        url = hook.url
        if hook.token_in_url:
            parts = urlsplit(url)
            query = (parts.query + "&" if parts.query else "") + urlencode({"token": hook.token_in_url})
            url = urlunsplit(parts._replace(query=query))
        return WebhookDelivery(url, event, body, headers)

    def _post_webhook(self, delivery: WebhookDelivery) -> int:
        with self._lock:
            self._deliveries.append(delivery)
        try:
            response = httpx.post(delivery.url, content=delivery.body, headers=delivery.headers, timeout=10)
        except httpx.HTTPError as exc:
            delivery.error = repr(exc)
            raise
        delivery.status = response.status_code
        return response.status_code

    def _fire_api_events(self, events: list[JsonDict]) -> None:
        """Jira sends webhooks for REST-made changes too; asynchronously, like Jira does."""
        with self._lock:
            hook = self._webhook
        if hook is None or not hook.api_events:
            return

        def run() -> None:
            with contextlib.suppress(httpx.HTTPError):
                self._send_all(events)

        threading.Thread(target=run, name="jira-fake-webhook", daemon=True).start()

    def _comment_events(self, iss: _Issue, comment: _Comment, user: str) -> list[JsonDict]:
        now_ms = int(time.time() * 1000)
        issue = self._issue_json(iss, self._webhook_fields)
        events: list[JsonDict] = [
            {
                "timestamp": now_ms,
                "webhookEvent": "comment_created",
                "comment": self._comment_json(iss, comment),
                "issue": issue,
                "eventType": "primaryAction",
                "matchedWebhookIds": [1],
            }
        ]
        hook = self._webhook
        if hook is not None and hook.comment_also_updates:
            events.append(
                {
                    "timestamp": now_ms,
                    "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": "issue_commented",
                    "user": self._user_json(user),
                    "issue": issue,
                    "comment": self._comment_json(iss, comment),
                    "matchedWebhookIds": [1],
                }
            )
        return events

    @staticmethod
    def _webhook_fields(name: str) -> bool:
        return name not in ("comment", "attachment")

    # -------------------------------------------------------------------------------- helpers

    def _next_id(self) -> int:
        return next(self._ids)

    def _get_issue(self, key_or_id: str) -> _Issue:
        iss = self._issues.get(key_or_id.upper())
        if iss is None and key_or_id.isdigit():
            iss = next((i for i in self._issues.values() if i.id == int(key_or_id)), None)
        if iss is None:
            _fail(404, [ISSUE_NOT_FOUND])
        return iss

    def _status_by_name(self, name: str) -> WorkflowStatus | None:
        return next((s for s in self._workflow.values() if s.name.lower() == name.lower()), None)

    def _find_user(self, name_or_account: str) -> str | None:
        for user in self._people:
            if user == name_or_account or self.account_id(user) == name_or_account:
                return user
        return None

    def _base(self) -> str:
        return self.url

    def _user_json(self, user: str) -> JsonDict:
        base = self._base()
        return {
            "self": f"{base}/rest/api/2/user?username={quote(user)}",
            "name": user,
            "key": user,
            "accountId": self.account_id(user),
            "emailAddress": f"{user}@example.com",
            "avatarUrls": {
                size: f"{base}/secure/useravatar?size={size}" for size in ("48x48", "24x24", "16x16", "32x32")
            },
            "displayName": user.replace(".", " ").replace("_", " ").title(),
            "active": True,
            "timeZone": "UTC",
            "accountType": "atlassian",
        }

    def _status_json(self, name: str) -> JsonDict:
        base = self._base()
        st = self._workflow[name]
        cat = STATUS_CATEGORIES[st.category]
        return {
            "self": f"{base}/rest/api/2/status/{st.id}",
            "description": "",
            "iconUrl": f"{base}/images/icons/statuses/generic.png",
            "name": st.name,
            "id": st.id,
            "statusCategory": {"self": f"{base}/rest/api/2/statuscategory/{cat['id']}", **cat},
        }

    def _priority_json(self, name: str) -> JsonDict:
        base = self._base()
        pid = PRIORITIES[name]
        return {
            "self": f"{base}/rest/api/2/priority/{pid}",
            "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
            "name": name,
            "id": pid,
        }

    def _issuetype_json(self, name: str) -> JsonDict:
        base = self._base()
        tid = ISSUE_TYPES[name]
        return {
            "self": f"{base}/rest/api/2/issuetype/{tid}",
            "id": tid,
            "description": f"A {name.lower()}.",
            "iconUrl": f"{base}/images/icons/issuetypes/{name.lower()}.png",
            "name": name,
            "subtask": False,
        }

    def _project_json(self, key: str) -> JsonDict:
        p = self._projects[key]
        return {
            "self": f"{self._base()}/rest/api/2/project/{p['id']}",
            "id": p["id"],
            "key": key,
            "name": p["name"],
            "projectTypeKey": "software",
            "simplified": False,
        }

    def _comment_json(self, iss: _Issue, c: _Comment, v3: bool = False) -> JsonDict:
        author = self._user_json(c.author)
        return {
            "self": f"{self._base()}/rest/api/{3 if v3 else 2}/issue/{iss.id}/comment/{c.id}",
            "id": str(c.id),
            "author": author,
            "body": as_adf(c.body) if v3 else adf_text(c.body),
            "updateAuthor": author,
            "created": _ts(c.created),
            "updated": _ts(c.updated),
            "jsdPublic": True,
        }

    def _attachment_json(self, a: _Attachment) -> JsonDict:
        base = self._base()
        return {
            "self": f"{base}/rest/api/2/attachment/{a.id}",
            "id": str(a.id),
            "filename": a.filename,
            "author": self._user_json(a.author),
            "created": _ts(a.created),
            "size": len(a.data),
            "mimeType": a.mime_type,
            "content": f"{base}/secure/attachment/{a.id}/{quote(a.filename)}",
        }

    def _issue_json(self, iss: _Issue, want: Callable[[str], bool], v3: bool = False) -> JsonDict:
        resolution = None
        if iss.resolution is not None:
            rid = RESOLUTIONS[iss.resolution]
            resolution = {
                "self": f"{self._base()}/rest/api/2/resolution/{rid}",
                "id": rid,
                "description": "",
                "name": iss.resolution,
            }
        comments = [self._comment_json(iss, c, v3=v3) for c in iss.comments]
        values: JsonDict = {
            "summary": iss.summary,
            "description": as_adf(iss.description) if v3 else (adf_text(iss.description) or None),
            "labels": list(iss.labels),
            "priority": self._priority_json(iss.priority),
            "status": self._status_json(iss.status),
            "resolution": resolution,
            "resolutiondate": _ts(iss.resolutiondate),
            "assignee": self._user_json(iss.assignee) if iss.assignee else None,
            "reporter": self._user_json(iss.reporter),
            "issuetype": self._issuetype_json(iss.issuetype),
            "project": self._project_json(iss.project),
            "created": _ts(iss.created),
            "updated": _ts(iss.updated),
            "statuscategorychangedate": _ts(iss.status_changed),
            "comment": {
                "comments": comments,
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            },
            "attachment": [self._attachment_json(a) for a in iss.attachments],
        }
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(iss.id),
            "self": f"{self._base()}/rest/api/2/issue/{iss.id}",
            "key": iss.key,
            "fields": {name: value for name, value in values.items() if want(name)},
        }

    @staticmethod
    def _field_filter(requested: list[str], default: str) -> Callable[[str], bool]:
        """Jira's `fields` parameter: `*all`, `*navigable`, names, `-name` exclusions."""
        names = [n.strip() for value in requested for n in value.split(",") if n.strip()] or [default]
        rendered = {f.id: f for f in FIELDS if f.rendered}
        chosen: set[str] = set()
        excluded: set[str] = set()
        for name in names:
            if name == "*all":
                chosen |= set(rendered)
            elif name == "*navigable":
                chosen |= {f for f, d in rendered.items() if d.navigable}
            elif name.startswith("-"):
                excluded.add(name[1:])
            else:
                chosen.add(name)
        return lambda n: n in chosen and n not in excluded

    # ------------------------------------------------------------------------ state changes

    def _add_comment(self, iss: _Issue, author: str, body: str | JsonDict) -> _Comment:
        now = datetime.now(UTC)
        comment = _Comment(self._next_id(), author, body, now, now)
        iss.comments.append(comment)
        iss.updated = now
        return comment

    def _do_transition(self, iss: _Issue, target: WorkflowStatus, user: str) -> JsonDict:
        """Move the issue; return the `jira:issue_updated` event Jira would send for it."""
        now = datetime.now(UTC)
        old = self._workflow[iss.status]
        items: list[JsonDict] = []
        if target.resolution != iss.resolution:
            items.append(
                {
                    "field": "resolution",
                    "fieldtype": "jira",
                    "fieldId": "resolution",
                    "from": RESOLUTIONS.get(iss.resolution or ""),
                    "fromString": iss.resolution,
                    "to": RESOLUTIONS.get(target.resolution or ""),
                    "toString": target.resolution,
                }
            )
            iss.resolution = target.resolution
            iss.resolutiondate = now if target.resolution else None
        items.append(
            {
                "field": "status",
                "fieldtype": "jira",
                "fieldId": "status",
                "from": old.id,
                "fromString": old.name,
                "to": target.id,
                "toString": target.name,
            }
        )
        if old.category != target.category:
            iss.status_changed = now
        iss.status = target.name
        iss.updated = now
        return {
            "timestamp": int(time.time() * 1000),
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "user": self._user_json(user),
            "issue": self._issue_json(iss, self._webhook_fields),
            "changelog": {"id": str(self._next_id()), "items": items},
            "matchedWebhookIds": [1],
        }

    # ------------------------------------------------------------------------------- dispatch

    def _build_routes(self) -> list[_Route]:
        def r(method: str, path: str, handler: Callable[..., _Response], auth: bool = True) -> _Route:
            return (method, re.compile(path), handler, auth)

        k = r"(?P<key>[^/]+)"
        return [
            r("GET", rf"{API}/serverInfo", self._h_server_info, auth=False),
            r("GET", rf"{API}/field", self._h_fields),
            r("GET", rf"{API}/myself", self._h_myself),
            r("GET", rf"{API}/project", self._h_projects),
            r("GET", rf"{API}/project/{k}", self._h_project),
            r("GET", rf"{API}/priority", self._h_priorities),
            r("GET", rf"{API}/issuetype", self._h_issuetypes),
            r("GET", rf"{API}/status", self._h_statuses),
            r("POST", rf"{API}/issue", self._h_create),
            r("GET", rf"{API}/issue/{k}", self._h_get_issue),
            r("PUT", rf"{API}/issue/{k}", self._h_edit_issue),
            r("GET", rf"{API}/issue/{k}/comment", self._h_list_comments),
            r("POST", rf"{API}/issue/{k}/comment", self._h_add_comment),
            r("GET", rf"{API}/issue/{k}/transitions", self._h_list_transitions),
            r("POST", rf"{API}/issue/{k}/transitions", self._h_transition),
            r("GET", rf"{API}/issue/{k}/remotelink", self._h_list_remote_links),
            r("POST", rf"{API}/issue/{k}/remotelink", self._h_add_remote_link),
            r("POST", rf"{API}/issue/{k}/attachments", self._h_attach),
            r("GET", rf"{API}/search", self._h_search),
            r("POST", rf"{API}/search", self._h_search),
            r("GET", rf"{API}/search/jql", self._h_search_jql),
            r("POST", rf"{API}/search/jql", self._h_search_jql),
            r("POST", rf"{API3}/issue", functools.partial(self._h_create, v3=True)),
            r("GET", rf"{API3}/issue/{k}", functools.partial(self._h_get_issue, v3=True)),
            r("PUT", rf"{API3}/issue/{k}", functools.partial(self._h_edit_issue, v3=True)),
            r("GET", rf"{API3}/issue/{k}/comment", functools.partial(self._h_list_comments, v3=True)),
            r("POST", rf"{API3}/issue/{k}/comment", functools.partial(self._h_add_comment, v3=True)),
            r("GET", r"/secure/attachment/(?P<aid>\d+)/(?P<name>[^/]+)", self._h_attachment_content),
        ]

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Response:
        parts = urlsplit(raw_path)
        path = unquote(parts.path).rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            self._requests.append((method, path))
            rule = next(
                (
                    f
                    for f in self._fail_rules
                    if f.count > 0
                    and (f.method is None or f.method == method)
                    and (f.path is None or f.path.search(path))
                ),
                None,
            )
            if rule is not None:
                rule.count -= 1
        try:
            if rule is not None:
                return self._injected_failure(rule)
            user = self._authenticate(headers)
            allowed: list[str] = []
            for route_method, pattern, handler, needs_auth in self._routes:
                m = pattern.fullmatch(path)
                if m is None:
                    continue
                if route_method != method:
                    allowed.append(route_method)
                    continue
                if needs_auth and user is None:
                    raise _HTTPError(
                        401,
                        {"errorMessages": [NOT_AUTHENTICATED], "errors": {}},
                        {"WWW-Authenticate": 'Basic realm="protected-area"'},
                    )
                return handler(
                    user=user, method=method, query=query, headers=headers, body=body, **m.groupdict()
                )
            if allowed:
                raise _HTTPError(405, "", {"Allow": ", ".join(allowed)})
            _fail(404, [f"null for uri: {self._base()}{raw_path}"])
        except _HTTPError as exc:
            if isinstance(exc.payload, dict):
                body_out = json.dumps(exc.payload).encode()
                exc.headers.setdefault("Content-Type", "application/json;charset=UTF-8")
            else:
                body_out = exc.payload.encode()
                exc.headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
            return _Response(exc.status, body_out, exc.headers)

    @staticmethod
    def _injected_failure(rule: _FailRule) -> _Response:
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if rule.status == 429:
            headers["Retry-After"] = str(rule.retry_after)
            headers["X-RateLimit-Limit"] = "100"
            headers["X-RateLimit-Remaining"] = "0"
            message = "Rate limit exceeded."
        elif rule.status == 503:
            message = "Service Unavailable"
            headers["Retry-After"] = str(rule.retry_after)
        else:
            message = "Internal server error"
        body = json.dumps({"errorMessages": [message], "errors": {}}).encode()
        return _Response(rule.status, body, headers)

    def _authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The user behind the request; None when anonymous. Bad credentials are a 401 right away."""
        auth = headers.get("authorization")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        user: str | None = None
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                name, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
                if name in self._tokens and hmac.compare_digest(self._tokens[name], secret):
                    user = name
        elif scheme.lower() == "bearer":
            user = next((n for n, t in self._tokens.items() if hmac.compare_digest(t, value.strip())), None)
        if user is None:
            raise _HTTPError(
                401,
                {"errorMessages": [NOT_AUTHENTICATED], "errors": {}},
                {
                    "WWW-Authenticate": 'Basic realm="protected-area"',
                    "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
                },
            )
        return user

    @staticmethod
    def _json(status: int, payload: Any) -> _Response:
        return _Response(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json;charset=UTF-8"}
        )

    @staticmethod
    def _body_json(headers: Mapping[str, str], body: bytes) -> JsonDict:
        ctype = headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise _HTTPError(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            _fail(400, [f"Unexpected character: {exc}"])
        if not isinstance(data, dict):
            _fail(400, ["Can not deserialize instance of object out of non-object token"])
        return data

    @staticmethod
    def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
        raw = query.get(name, [""])[-1]
        if raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            _fail(400, [f"The value '{raw}' is not a valid number for the parameter '{name}'."])

    # ------------------------------------------------------------------------------ handlers

    def _h_server_info(self, **_: Any) -> _Response:
        version = [1001, 0, 0] if self.cloud else [9, 12, 2]
        return self._json(
            200,
            {
                "baseUrl": self._base(),
                "version": ".".join(map(str, version)) + ("-SNAPSHOT" if self.cloud else ""),
                "versionNumbers": version,
                "deploymentType": "Cloud" if self.cloud else "Server",
                "buildNumber": 100260 if self.cloud else 9120002,
                "buildDate": "2024-01-01T00:00:00.000+0000",
                "serverTime": _ts(datetime.now(UTC)),
                "scmInfo": "0" * 40,
                "serverTitle": "Jira",
            },
        )

    def _h_fields(self, **_: Any) -> _Response:
        out = []
        for f in FIELDS:
            item: JsonDict = {
                "id": f.id,
                "key": f.id,
                "name": f.name,
                "custom": False,
                "orderable": f.orderable,
                "navigable": f.navigable,
                "searchable": f.searchable,
                "clauseNames": list(f.clause_names),
            }
            if f.schema is not None:
                item["schema"] = f.schema
            out.append(item)
        return self._json(200, out)

    def _h_myself(self, user: str, **_: Any) -> _Response:
        return self._json(
            200,
            {
                **self._user_json(user),
                "groups": {"size": 1, "items": []},
                "applicationRoles": {"size": 1, "items": []},
                "expand": "groups,applicationRoles",
            },
        )

    def _h_projects(self, **_: Any) -> _Response:
        with self._lock:
            return self._json(200, [self._project_json(k) for k in self._projects])

    def _h_project(self, key: str, **_: Any) -> _Response:
        with self._lock:
            found = next((k for k, p in self._projects.items() if key in (k, p["id"])), None)
            if found is None:
                _fail(404, [f"No project could be found with key '{key}'."])
            return self._json(200, self._project_json(found))

    def _h_priorities(self, **_: Any) -> _Response:
        return self._json(200, [self._priority_json(p) for p in PRIORITIES])

    def _h_issuetypes(self, **_: Any) -> _Response:
        return self._json(200, [self._issuetype_json(t) for t in ISSUE_TYPES])

    def _h_statuses(self, **_: Any) -> _Response:
        return self._json(200, [self._status_json(s) for s in self._workflow])

    # ---- issues

    def _resolve_ref(self, value: Any, table: Mapping[str, str]) -> str | None:
        """`{"name": ...}` or `{"id": ...}` → the canonical name, None if it does not exist."""
        if not isinstance(value, dict):
            return None
        if "id" in value:
            return next((n for n, i in table.items() if i == str(value["id"])), None)
        if "name" in value:
            return next((n for n in table if n == value["name"]), None)
        return None

    def _validate_fields(
        self, fields: JsonDict, *, creating: bool, v3: bool = False
    ) -> tuple[JsonDict, dict[str, str]]:
        """Check the `fields` object like Jira's validators do; return (clean values, errors)."""
        clean: JsonDict = {}
        errors: dict[str, str] = {}
        for name, value in fields.items():
            if name not in _WRITABLE or (not creating and name == "project"):
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
                continue
            if name == "project":
                ref = value if isinstance(value, dict) else {}
                key = next(
                    (
                        k
                        for k, p in self._projects.items()
                        if ref.get("key") == k or str(ref.get("id")) == p["id"]
                    ),
                    None,
                )
                if key is None:
                    errors["project"] = "valid project is required"
                else:
                    clean["project"] = key
            elif name == "issuetype":
                itype = self._resolve_ref(value, ISSUE_TYPES)
                if itype is None:
                    errors["issuetype"] = "valid issue type is required"
                else:
                    clean["issuetype"] = itype
            elif name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors["summary"] = "You must specify a summary of the issue."
                elif "\n" in value or "\r" in value:
                    errors["summary"] = "The summary is invalid because it contains newline characters."
                elif len(value) > 255:
                    errors["summary"] = "Summary must be less than 255 characters."
                else:
                    clean["summary"] = value
            elif name == "description" and v3:
                problem = None if value is None else adf_problem(value)
                if problem:
                    errors["description"] = problem
                else:
                    clean["description"] = value
            elif name == "description":
                if value is not None and not isinstance(value, str):
                    errors["description"] = "Operation value must be a string"
                else:
                    clean["description"] = value
            elif name == "labels":
                labels, err = self._check_labels(value)
                if err:
                    errors["labels"] = err
                else:
                    clean["labels"] = labels
            elif name == "priority":
                if not isinstance(value, dict) or not ({"id", "name"} & set(value)):
                    errors["priority"] = "Could not find valid 'id' or 'name' in priority object."
                else:
                    prio = self._resolve_ref(value, PRIORITIES)
                    if prio is None:
                        errors["priority"] = (
                            f"Priority name '{value['name']}' is not valid"
                            if "name" in value
                            else f"Invalid priority id '{value['id']}'"
                        )
                    else:
                        clean["priority"] = prio
            elif name in ("assignee", "reporter"):
                if value is None:
                    if name == "reporter":
                        errors[name] = "Reporter is required."
                    else:
                        clean[name] = None
                    continue
                ident = value.get("accountId") or value.get("name") if isinstance(value, dict) else None
                user = self._find_user(str(ident)) if ident else None
                if user is None:
                    errors[name] = f"User '{ident}' does not exist."
                else:
                    clean[name] = user
        return clean, errors

    @staticmethod
    def _check_labels(value: Any) -> tuple[list[str], str | None]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return [], "Operation value must be a string"
        out: list[str] = []
        for label in value:
            err = JiraFake._check_label(label)
            if err:
                return [], err
            if label not in out:
                out.append(label)
        return out, None

    @staticmethod
    def _check_label(label: Any) -> str | None:
        if not isinstance(label, str) or not label:
            return "Operation value must be a string"
        if any(ch.isspace() for ch in label):
            return f"The label '{label}' contains spaces which is invalid."
        if len(label) > 255:
            return f"The label '{label}' exceeds the maximum length for a single label of 255 characters."
        return None

    def _apply_update_ops(
        self, update: JsonDict, fields: JsonDict, labels: list[str], clean: JsonDict, errors: dict[str, str]
    ) -> list[str]:
        """Jira's `update` verbs (add/remove/set) on top of `fields`; returns comment bodies to add.

        `labels` is changed in place, `clean` and `errors` are filled like `_validate_fields` does.
        """
        new_comments: list[str] = []
        for name, ops in update.items():
            if name in fields:
                errors[name] = f"Field '{name}' cannot be set in both 'fields' and 'update'."
                continue
            if not isinstance(ops, list):
                errors[name] = "Operations must be a list"
                continue
            for op in ops:
                if not isinstance(op, dict) or len(op) != 1:
                    errors[name] = "Each operation must have exactly one verb"
                    break
                verb, value = next(iter(op.items()))
                if name == "labels":
                    err: str | None = None
                    if verb == "set":
                        new, err = self._check_labels(value)
                        labels[:] = new
                    elif verb in ("add", "remove"):
                        err = self._check_label(value)
                        if err is None and verb == "add" and value not in labels:
                            labels.append(value)
                        if err is None and verb == "remove" and value in labels:
                            labels.remove(value)
                    else:
                        err = f"Field 'labels' does not support operation '{verb}'"
                    if err:
                        errors["labels"] = err
                elif name == "comment" and verb == "add":
                    text = value.get("body") if isinstance(value, dict) else None
                    if not isinstance(text, str) or not text.strip():
                        errors["comment"] = "Comment body can not be empty!"
                    else:
                        new_comments.append(text)
                elif verb == "set" and name in _WRITABLE - {"labels", "project", "issuetype"}:
                    more, errs = self._validate_fields({name: value}, creating=False)
                    clean.update(more)
                    errors.update(errs)
                else:
                    errors[name] = (
                        f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                    )
        return new_comments

    def _h_create(
        self, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        fields = data.get("fields")
        if not isinstance(fields, dict):
            _fail(400, ["Issue must have fields"] if fields is None else ["fields must be an object"])
        with self._lock:
            clean, errors = self._validate_fields(fields, creating=True, v3=v3)
            if "project" not in fields:
                errors["project"] = "project is required"
            if "issuetype" not in fields:
                errors["issuetype"] = "issue type is required"
            if "summary" not in fields:
                errors["summary"] = "You must specify a summary of the issue."
            update = data.get("update") or {}
            if not isinstance(update, dict):
                _fail(400, ["update must be an object"])
            labels = list(clean.get("labels", []))
            new_comments = self._apply_update_ops(update, fields, labels, clean, errors)
            if errors:
                _fail(400, [], errors)
            project = clean["project"]
            number = self._counters.get(project, 0) + 1
            self._counters[project] = number
            now = datetime.now(UTC)
            first = next(iter(self._workflow.values()))
            iss = _Issue(
                id=self._next_id(),
                key=f"{project}-{number}",
                project=project,
                issuetype=clean["issuetype"],
                summary=clean["summary"],
                description=clean.get("description"),
                labels=labels,
                priority=clean.get("priority", "Medium"),
                status=first.name,
                reporter=clean.get("reporter", user),
                created=now,
                assignee=clean.get("assignee"),
                updated=now,
                status_changed=now,
            )
            self._issues[iss.key] = iss
            for text in new_comments:
                self._add_comment(iss, user, text)
            created_event: JsonDict = {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_created",
                "issue_event_type_name": "issue_created",
                "user": self._user_json(user),
                "issue": self._issue_json(iss, self._webhook_fields),
                "matchedWebhookIds": [1],
            }
            held = self._holds.pop(0) if self._holds else None
            if held is not None:
                self._active_holds.append(held)
                held.key = iss.key
            version = 3 if v3 else 2
            payload = {
                "id": str(iss.id),
                "key": iss.key,
                "self": f"{self._base()}/rest/api/{version}/issue/{iss.id}",
            }
        self._fire_api_events([created_event])
        if held is not None:
            held.created.set()
            held.released.wait(self._hold_timeout)
        return self._json(201, payload)

    def _h_get_issue(self, key: str, query: Mapping[str, list[str]], v3: bool = False, **_: Any) -> _Response:
        with self._lock:
            iss = self._get_issue(key)
            want = self._field_filter(query.get("fields", []), "*all")
            return self._json(200, self._issue_json(iss, want, v3=v3))

    def _h_edit_issue(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        fields = data.get("fields") or {}
        update = data.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            _fail(400, ["fields and update must be objects"])
        with self._lock:
            iss = self._get_issue(key)
            clean, errors = self._validate_fields(fields, creating=False, v3=v3)
            labels = list(clean.get("labels", iss.labels))
            new_comments = self._apply_update_ops(update, fields, labels, clean, errors)
            if errors:
                _fail(400, [], errors)
            before = self._editable_strings(iss)
            for name, value in clean.items():
                if name != "labels":
                    setattr(iss, name, value)
            iss.labels = labels
            iss.updated = datetime.now(UTC)
            events = self._edit_events(iss, user, before)
            comments = [self._add_comment(iss, user, text) for text in new_comments]
            events += [e for c in comments for e in self._comment_events(iss, c, user)]
        self._fire_api_events(events)
        return _Response(204)

    @staticmethod
    def _editable_strings(iss: _Issue) -> dict[str, str | None]:
        """Field values as a changelog shows them (`fromString` / `toString`)."""
        return {
            "summary": iss.summary,
            "description": adf_text(iss.description) or None,
            "labels": " ".join(iss.labels) or None,
            "priority": iss.priority,
            "assignee": iss.assignee,
            "issuetype": iss.issuetype,
        }

    def _edit_events(self, iss: _Issue, user: str, before: dict[str, str | None]) -> list[JsonDict]:
        """The `jira:issue_updated` event for a REST edit; none when nothing changed (as in Jira)."""
        after = self._editable_strings(iss)
        items = [
            {
                "field": name,
                "fieldtype": "jira",
                "fieldId": name,
                "from": None,
                "fromString": before[name],
                "to": None,
                "toString": after[name],
            }
            for name in after
            if before[name] != after[name]
        ]
        if not items:
            return []
        return [
            {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_updated",
                "user": self._user_json(user),
                "issue": self._issue_json(iss, self._webhook_fields),
                "changelog": {"id": str(self._next_id()), "items": items},
                "matchedWebhookIds": [1],
            }
        ]

    # ---- comments

    def _h_list_comments(
        self, key: str, query: Mapping[str, list[str]], v3: bool = False, **_: Any
    ) -> _Response:
        start = self._int_param(query, "startAt", 0)
        limit = self._int_param(query, "maxResults", 5000)
        order = query.get("orderBy", ["created"])[-1]
        with self._lock:
            iss = self._get_issue(key)
            comments = list(iss.comments)
            if order.startswith("-"):
                comments.reverse()
            page = comments[start : start + max(limit, 0)]
            return self._json(
                200,
                {
                    "comments": [self._comment_json(iss, c, v3=v3) for c in page],
                    "maxResults": limit,
                    "total": len(comments),
                    "startAt": start,
                },
            )

    def _h_add_comment(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        text = data.get("body")
        if v3:
            problem = adf_problem(text)
            if problem or not isinstance(text, dict):
                _fail(400, [], {"comment": problem or ADF_REQUIRED})
            with self._lock:
                iss = self._get_issue(key)
                comment = self._add_comment(iss, user, text)
                payload = self._comment_json(iss, comment, v3=True)
                events = self._comment_events(iss, comment, user)
            self._fire_api_events(events)
            return self._json(201, payload)
        with self._lock:
            iss = self._get_issue(key)
            if not isinstance(text, str) or not text.strip():
                _fail(400, [], {"comment": "Comment body can not be empty!"})
            if len(text) > 32767:
                _fail(
                    400,
                    [],
                    {
                        "comment": "The entered text is too long. It exceeds the allowed limit of "
                        "32,767 characters."
                    },
                )
            comment = self._add_comment(iss, user, text)
            payload = self._comment_json(iss, comment)
            events = self._comment_events(iss, comment, user)
        self._fire_api_events(events)
        return self._json(201, payload)

    # ---- transitions

    def _transition_json(self, st: WorkflowStatus) -> JsonDict:
        return {
            "id": st.transition_id,
            "name": st.name,
            "to": self._status_json(st.name),
            "hasScreen": False,
            "isGlobal": True,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
        }

    def _available(self, iss: _Issue) -> list[WorkflowStatus]:
        return [s for s in self._workflow.values() if s.name != iss.status]

    def _h_list_transitions(self, key: str, query: Mapping[str, list[str]], **_: Any) -> _Response:
        only = query.get("transitionId", [None])[-1]
        with self._lock:
            iss = self._get_issue(key)
            items = [
                self._transition_json(s) for s in self._available(iss) if only in (None, s.transition_id)
            ]
            return self._json(200, {"expand": "transitions", "transitions": items})

    def _h_transition(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        transition = data.get("transition")
        tid = transition.get("id") if isinstance(transition, dict) else None
        with self._lock:
            iss = self._get_issue(key)
            if tid is None:
                _fail(400, ["Missing 'transition' identifier"])
            target = next((s for s in self._available(iss) if s.transition_id == str(tid)), None)
            if target is None:
                _fail(400, [f"Transition id '{tid}' is not valid for this issue."])
            extra = data.get("fields") or {}
            if extra:
                _fail(
                    400,
                    [],
                    {
                        name: f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                        "or unknown."
                        for name in extra
                    },
                )
            event = self._do_transition(iss, target, user)
            events = [event]
            for op in (data.get("update") or {}).get("comment", []):
                text = op.get("add", {}).get("body", "") if isinstance(op, dict) else ""
                if text:
                    self._add_comment(iss, user, text)
        self._fire_api_events(events)
        return _Response(204)

    # ---- remote links

    def _h_list_remote_links(self, key: str, query: Mapping[str, list[str]], **_: Any) -> _Response:
        global_id = query.get("globalId", [None])[-1]
        with self._lock:
            iss = self._get_issue(key)
            links = [link for link in iss.remote_links if global_id in (None, link.get("globalId"))]
            return self._json(200, copy.deepcopy(links))

    def _h_add_remote_link(self, key: str, headers: Mapping[str, str], body: bytes, **_: Any) -> _Response:
        data = self._body_json(headers, body)
        obj = data.get("object")
        with self._lock:
            iss = self._get_issue(key)
            errors: dict[str, str] = {}
            if not isinstance(obj, dict):
                _fail(400, [], {"object": "'object' is required."})
            if not obj.get("url"):
                errors["url"] = "'url' is required."
            if not obj.get("title"):
                errors["title"] = "'title' is required."
            if errors:
                _fail(400, [], errors)
            global_id = data.get("globalId")
            existing = next(
                (link for link in iss.remote_links if global_id and link.get("globalId") == global_id), None
            )
            if existing is not None:  # Jira updates the link with the same globalId in place
                existing.update({k: copy.deepcopy(v) for k, v in data.items() if k != "id"})
                return self._json(200, {"id": existing["id"], "self": existing["self"]})
            lid = self._next_id()
            link = {
                "id": lid,
                "self": f"{self._base()}/rest/api/2/issue/{iss.key}/remotelink/{lid}",
                **{
                    k: copy.deepcopy(v)
                    for k, v in data.items()
                    if k in ("globalId", "application", "relationship", "object")
                },
            }
            iss.remote_links.append(link)
            iss.updated = datetime.now(UTC)
            return self._json(201, {"id": lid, "self": link["self"]})

    # ---- attachments

    def _h_attach(self, key: str, user: str, headers: Mapping[str, str], body: bytes, **_: Any) -> _Response:
        if headers.get("x-atlassian-token", "").lower() != "no-check":
            raise _HTTPError(403, "XSRF check failed")
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise _HTTPError(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        raw = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        files: list[tuple[str, bytes, str]] = []
        if message.is_multipart():
            for part in message.iter_parts():
                if not isinstance(part, EmailMessage):
                    continue
                if part.get_param("name", header="content-disposition") != "file":
                    continue
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                files.append((part.get_filename() or "attachment", data, part.get_content_type()))
        with self._lock:
            iss = self._get_issue(key)
            if not files:
                _fail(400, ["No file was uploaded: the multipart field must be named 'file'."])
            out = []
            for filename, data, mime in files:
                att = _Attachment(self._next_id(), filename, user, datetime.now(UTC), data, mime)
                iss.attachments.append(att)
                out.append(self._attachment_json(att))
            iss.updated = datetime.now(UTC)
            return self._json(200, out)

    def _h_attachment_content(self, aid: str, **_: Any) -> _Response:
        with self._lock:
            for iss in self._issues.values():
                for att in iss.attachments:
                    if att.id == int(aid):
                        return _Response(200, att.data, {"Content-Type": att.mime_type})
        _fail(404, ["The attachment does not exist"])

    # ---- search

    def _search_params(
        self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes, method: str
    ) -> tuple[str, list[str], int, str | None]:
        """(jql, fields, maxResults, startAt-or-token) from the query string or a POST body."""
        if method == "POST":
            data = self._body_json(headers, body)
            raw_fields = data.get("fields") or []
            fields = [raw_fields] if isinstance(raw_fields, str) else [str(f) for f in raw_fields]
            token = data.get("nextPageToken", data.get("startAt"))
            return (
                str(data.get("jql") or ""),
                fields,
                int(data.get("maxResults", 50)),
                None if token is None else str(token),
            )
        token = query.get("nextPageToken", query.get("startAt", [None]))[-1]
        return (
            query.get("jql", [""])[-1],
            query.get("fields", []),
            self._int_param(query, "maxResults", 50),
            token,
        )

    def _run_jql(self, jql: str, user: str, *, bounded: bool) -> list[_Issue]:
        try:
            parsed = parse_jql(jql)
        except JQLError as exc:
            _fail(400, [str(exc)])
        if bounded and parsed.where is None:
            _fail(
                400,
                [
                    "Unbounded JQL queries are not allowed here. Please add a search restriction to "
                    "your query."
                ],
            )
        try:
            if parsed.where is not None:
                self._check_node(parsed.where, user)
            now = datetime.now(UTC)
            visible = [
                i for i in self._issues.values() if (now - i.created).total_seconds() >= self._search_lag
            ]
            hits = [i for i in visible if parsed.where is None or self._eval(parsed.where, i, user, now)]
            return self._sort(hits, parsed.order or (("created", True),))
        except JQLError as exc:
            _fail(400, [str(exc)])

    def _h_search(
        self,
        user: str,
        method: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        **_: Any,
    ) -> _Response:
        if self.cloud:
            _fail(
                410,
                [
                    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                    "A full migration guideline is available at "
                    "https://developer.atlassian.com/changelog/#CHANGE-2046"
                ],
            )
        jql, fields, limit, start_raw = self._search_params(query, headers, body, method)
        start = int(start_raw or 0)
        limit = max(0, min(limit, 1000))
        with self._lock:
            hits = self._run_jql(jql, user, bounded=False)
            want = self._field_filter(fields, "*navigable")
            page = hits[start : start + limit]
            return self._json(
                200,
                {
                    "expand": "schema,names",
                    "startAt": start,
                    "maxResults": limit,
                    "total": len(hits),
                    "issues": [self._issue_json(i, want) for i in page],
                },
            )

    def _h_search_jql(
        self,
        user: str,
        method: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        **_: Any,
    ) -> _Response:
        if not self.cloud:
            _fail(404, [f"null for uri: {self._base()}/rest/api/2/search/jql"])
        jql, fields, limit, token = self._search_params(query, headers, body, method)
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except ValueError:
                _fail(400, ["The provided next page token is invalid or expired."])
        names = [n.strip() for v in fields for n in v.split(",") if n.strip()]
        id_only = not names or names == ["id"]
        limit = max(0, min(limit, 5000 if id_only else 100))
        with self._lock:
            hits = self._run_jql(jql, user, bounded=True)
            page = hits[start : start + limit]
            if id_only:
                issues = [{"id": str(i.id)} for i in page]
            else:
                want = self._field_filter(fields, "*navigable")
                issues = [self._issue_json(i, want) for i in page]
            payload: JsonDict = {"issues": issues, "isLast": start + limit >= len(hits)}
            if not payload["isLast"]:
                payload["nextPageToken"] = base64.urlsafe_b64encode(
                    f"offset:{start + limit}".encode()
                ).decode()
            return self._json(200, payload)

    # ---- JQL semantics

    _JQL_FIELDS = {
        "project": "project",
        "labels": "labels",
        "label": "labels",
        "status": "status",
        "statuscategory": "statusCategory",
        "resolution": "resolution",
        "priority": "priority",
        "issuetype": "issuetype",
        "type": "issuetype",
        "assignee": "assignee",
        "reporter": "reporter",
        "key": "key",
        "issuekey": "key",
        "issue": "key",
        "id": "key",
        "summary": "summary",
        "description": "description",
        "comment": "comment",
        "text": "text",
        "created": "created",
        "createddate": "created",
        "updated": "updated",
        "updateddate": "updated",
    }
    _TEXT_FIELDS = {"summary", "description", "comment", "text"}
    _DATE_FIELDS = {"created", "updated"}
    _EMPTYABLE = {"labels", "resolution", "assignee", "priority", "description"}

    def _canonical_field(self, name: str) -> str:
        canonical = self._JQL_FIELDS.get(name.lower())
        if canonical is None:
            raise JQLError(f"Field '{name}' does not exist or you do not have permission to view it.")
        return canonical

    def _check_node(self, node: _Node, user: str) -> None:
        """Jira validates the whole query (fields, operators, values) before running it."""
        if isinstance(node, _BoolNode):
            for child in node.children:
                self._check_node(child, user)
            return
        name = self._canonical_field(node.field)
        op = node.op
        if name in self._TEXT_FIELDS:
            allowed = {"~", "!~", "is", "is not"}
        elif name in self._DATE_FIELDS:
            allowed = {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"}
        else:
            allowed = {"=", "!=", "in", "not in", "is", "is not"}
        if op in ("is", "is not") and name not in self._EMPTYABLE | self._TEXT_FIELDS | self._DATE_FIELDS:
            allowed.discard(op)
        if op not in allowed:
            raise JQLError(f"The operator '{op.upper()}' is not supported by the '{node.field}' field.")
        for value in node.values:
            if value.function is not None:
                if value.function != "currentuser" or name not in ("assignee", "reporter"):
                    raise JQLError(f"Unable to find JQL function '{value.function}()'.")
                continue
            if value.empty:
                continue
            if name in self._DATE_FIELDS and _parse_date(value.text, datetime.now(UTC)) is None:
                raise JQLError(
                    f"Date value '{value.text}' for field '{node.field}' is invalid. Valid formats "
                    "include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
                    "or a period format e.g. '-5d', '4w 2d'."
                )
            if (
                name == "key"
                and value.text.upper() not in self._issues
                and not (value.text.isdigit() and any(i.id == int(value.text) for i in self._issues.values()))
            ):
                raise JQLError(f"An issue with key '{value.text}' does not exist for field '{node.field}'.")
            domain = self._domain(name)
            if domain is not None and value.text.lower() not in domain:
                raise JQLError(f"The value '{value.text}' does not exist for the field '{node.field}'.")

    def _domain(self, name: str) -> set[str] | None:
        """Accepted (lower-cased) values for closed-domain fields; None when any value goes."""
        if name == "project":
            return {a.lower() for p in self._projects.values() for a in (p["key"], p["id"], p["name"])}
        if name == "status":
            return {a.lower() for s in self._workflow.values() for a in (s.name, s.id)}
        if name == "statusCategory":
            return {
                str(a).lower() for c in STATUS_CATEGORIES.values() for a in (c["key"], c["name"], c["id"])
            }
        if name == "resolution":
            return {a.lower() for r in RESOLUTIONS.items() for a in r} | {"unresolved"}
        if name == "priority":
            return {a.lower() for p in PRIORITIES.items() for a in p}
        if name == "issuetype":
            return {a.lower() for t in ISSUE_TYPES.items() for a in t}
        if name in ("assignee", "reporter"):
            return {a.lower() for u in self._people for a in (u, self.account_id(u))}
        return None

    def _items(self, name: str, iss: _Issue) -> list[set[str]]:
        """The issue's value(s) for a JQL field, each as its set of lower-cased aliases; [] is EMPTY."""
        if name == "project":
            p = self._projects[iss.project]
            return [{p["key"].lower(), p["id"], p["name"].lower()}]
        if name == "labels":
            return [{label.lower()} for label in iss.labels]
        if name == "status":
            st = self._workflow[iss.status]
            return [{st.name.lower(), st.id}]
        if name == "statusCategory":
            cat = STATUS_CATEGORIES[self._workflow[iss.status].category]
            return [{cat["key"], cat["name"].lower(), str(cat["id"])}]
        if name == "resolution":
            return [] if iss.resolution is None else [{iss.resolution.lower(), RESOLUTIONS[iss.resolution]}]
        if name == "priority":
            return [{iss.priority.lower(), PRIORITIES[iss.priority]}]
        if name == "issuetype":
            return [{iss.issuetype.lower(), ISSUE_TYPES[iss.issuetype]}]
        if name in ("assignee", "reporter"):
            who = iss.assignee if name == "assignee" else iss.reporter
            return [] if who is None else [{who.lower(), self.account_id(who).lower()}]
        if name == "key":
            return [{iss.key.lower(), str(iss.id)}]
        raise JQLError(f"Field '{name}' does not exist or you do not have permission to view it.")

    def _eval(self, node: _Node, iss: _Issue, user: str, now: datetime) -> bool:
        if isinstance(node, _BoolNode):
            if node.op == "and":
                return all(self._eval(c, iss, user, now) for c in node.children)
            if node.op == "or":
                return any(self._eval(c, iss, user, now) for c in node.children)
            return not self._eval(node.children[0], iss, user, now)
        name = self._canonical_field(node.field)
        if name in self._TEXT_FIELDS:
            return self._eval_text(name, node, iss)
        if name in self._DATE_FIELDS:
            return self._eval_date(name, node, iss, now)
        items = self._items(name, iss)
        wanted = [v for v in node.values if not v.empty]
        wants_empty = any(v.empty for v in node.values)
        aliases = {(user.lower() if v.function else v.text.lower()) for v in wanted}
        if name == "resolution" and "unresolved" in aliases:
            aliases.discard("unresolved")
            wants_empty = True
        hit = any(item & aliases for item in items)
        if node.op in ("=", "in"):
            return hit or (wants_empty and not items)
        if node.op in ("!=", "not in"):  # like Jira, never matches an EMPTY field
            return bool(items) and not hit
        if node.op == "is":
            return not items
        return bool(items)  # is not

    def _eval_text(self, name: str, node: _Clause, iss: _Issue) -> bool:
        texts = {
            "summary": [iss.summary],
            "description": [adf_text(iss.description)],
            "comment": [adf_text(c.body) for c in iss.comments],
        }
        texts["text"] = texts["summary"] + texts["description"] + texts["comment"]
        haystack = " ".join(texts[name]).lower()
        if node.op in ("is", "is not"):
            return (not haystack.strip()) == (node.op == "is")
        needle = node.values[0].text.lower().strip("*")
        words = re.findall(r"\w+", needle)
        found = all(re.search(rf"\b{re.escape(w)}", haystack) for w in words) if words else False
        return found if node.op == "~" else not found

    def _eval_date(self, name: str, node: _Clause, iss: _Issue, now: datetime) -> bool:
        actual: datetime = iss.created if name == "created" else iss.updated
        if node.op in ("is", "is not"):
            return node.op == "is not"
        bounds = [_parse_date(v.text, now) for v in node.values]
        values = [b for b in bounds if b is not None]
        if node.op in ("=", "in"):
            return any(actual == v for v in values)
        if node.op in ("!=", "not in"):
            return all(actual != v for v in values)
        pivot = values[0]
        return {">": actual > pivot, ">=": actual >= pivot, "<": actual < pivot, "<=": actual <= pivot}[
            node.op
        ]

    def _sort(self, hits: list[_Issue], order: Sequence[tuple[str, bool]]) -> list[_Issue]:
        prio_rank = {name: i for i, name in enumerate(PRIORITIES)}
        keys: dict[str, Callable[[_Issue], Any]] = {
            "created": lambda i: (i.created, i.id),
            "updated": lambda i: (i.updated, i.id),
            "key": lambda i: (i.project, int(i.key.rsplit("-", 1)[1])),
            "priority": lambda i: -prio_rank[i.priority],
            "status": lambda i: i.status,
            "summary": lambda i: i.summary.lower(),
            "issuetype": lambda i: i.issuetype,
            "project": lambda i: i.project,
            "assignee": lambda i: i.assignee or "",
        }
        out = sorted(hits, key=lambda i: i.id)
        for field_name, desc in reversed(order):
            name = self._canonical_field(field_name)
            if name not in keys:
                raise JQLError(f"Field '{field_name}' does not support sorting.")
            out.sort(key=keys[name], reverse=desc)
        return out
