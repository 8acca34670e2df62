"""JQL, the language: tokenizer and parser with Jira's error messages. Its meaning over the issues
is in `search`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


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
