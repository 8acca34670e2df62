"""Cross-referencing: which change does the evidence itself name?

An error line, an error trace or an alert label often names what broke: a column, a route, a
file, a config key, a service. A change whose summary, paths or diff holds that name is tied to
the symptom by evidence, not merely by being close in time, so the builtin investigator ranks it
above a closer change nothing names. This module extracts those names (`Clue`), matches them
against a change (`ChangeMatch`: a changed line, a path, the summary, the change's service, or,
weakest, an unchanged line of a hunk it edits, such as the limit beside a raised setting), learns
the service's dependencies from parent/child spans, and tells changes that cannot alter
behaviour (docs, tests, comments, formatting) from the rest.

Pure and deterministic. Every text read here (log lines, trace names, labels, commit messages,
diffs) is untrusted data: it is only searched with escaped patterns and quoted back, bounded;
it never becomes a pattern, a template or markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from models.evidence import ChangeRef, LogLine, TraceRef

ClueKind = Literal["identifier", "route", "file", "segment", "word"]
Where = Literal["diff", "path", "summary", "service", "context"]

#: Clues kept per incident at most, and characters of one clue; the text they are read from is
#: cut to this many characters first (a stack trace in one line must not make matching slow).
MAX_CLUES = 80
MAX_CLUE_CHARS = 80
MAX_SOURCE_CHARS = 2000
#: Diff lines searched per change at most.
MAX_DIFF_LINES = 400
#: Strength of a match: a changed line or a named file beats a summary or a file stem; an
#: unchanged line around a hunk (`context`) is the weakest: the change edits next to the name.
_STRENGTH: dict[Where, int] = {"diff": 3, "path": 2, "summary": 2, "service": 2, "context": 1}

#: Alert labels that say where or how loud, not what broke.
_SKIP_LABELS = frozenset(
    {
        "alertname",
        "severity",
        "priority",
        "team",
        "env",
        "environment",
        "cluster",
        "region",
        "zone",
        "prometheus",
        "instance",
        "job",
        "endpoint",
        "namespace",
        "exported_namespace",
        "pod",
        "container",
        "node",
        "receiver",
        "monitor",
        "le",
        "quantile",
    }
)
#: Route segments that name no feature.
_GENERIC_SEGMENTS = frozenset({"api", "v1", "v2", "v3", "v4", "internal", "public", "rest", "rpc", "healthz"})
#: Hyphenated or dotted words that are protocol vocabulary, not a name in the code.
_GENERIC_IDENTIFIERS = frozenset(
    {
        "x-request-id",
        "content-type",
        "content-length",
        "keep-alive",
        "utf-8",
        "non-zero",
        "read-only",
        "e.g",
        "i.e",
        "http/1.1",
        "http/2",
    }
)

_QUOTED = re.compile(r"[\"'`\u201c\u00ab]([^\"'`\u201d\u00bb\s]{2,64})[\"'`\u201d\u00bb]")
_ROUTE = re.compile(r"(?<![\w.:/-])(/[A-Za-z0-9_.~{}:-]+(?:/[A-Za-z0-9_.~{}:-]+)*)")
_FILE = re.compile(
    r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|go|js|jsx|ts|tsx|java|kt|rb|php|rs|c|h|cc|cpp|cs|sql|yaml|yml"
    r"|json|toml|ini|conf|cfg|properties|html|css|scss|sh|tf|proto|xml|env|pem|crt|txt|csv))\b"
)
_IDENT = re.compile(
    r"(?<![\w.-])[A-Za-z][A-Za-z0-9]*(?:[_.-][A-Za-z0-9]+)+(?![\w-])"  # snake, kebab, dotted
    r"|(?<![\w.-])[A-Za-z][a-z0-9]+[A-Z][A-Za-z0-9]*(?![\w-])"  # camelCase, PascalCase
    r"|(?<![\w.-])[A-Z][A-Z0-9]*_[A-Z0-9_]+(?![\w-])"  # CONSTANT_CASE
)
_WORD = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]{2,40}(?![\w-])")
_HEXISH = re.compile(r"^[0-9a-fA-F._-]+$")
_METHOD = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+", re.IGNORECASE)

_DOC_PATH = re.compile(
    r"(?:^|/)(?:docs?|documentation)/|(?:^|/)(?:README|CHANGELOG|CHANGES|HISTORY|LICENSE|NOTICE|AUTHORS"
    r"|CONTRIBUTING|CODEOWNERS)[^/]*$|\.(?:md|markdown|rst|txt|adoc)$",
    re.IGNORECASE,
)
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|__tests__|specs?|testdata|fixtures)/|(?:^|/)test_[^/]*$|_test\.\w+$|\.(?:test|spec)\.\w+$",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"^(?:#|//|/\*|\*|--|<!--|;|%)")


@dataclass(frozen=True)
class Clue:
    """A name the evidence holds: what it is, which evidence holds it (`ref`) and that evidence's text."""

    text: str
    kind: ClueKind
    ref: str
    source: str


@dataclass(frozen=True)
class ChangeMatch:
    """A clue found in a change: where (`diff`, `path`, `summary`, `service`) and the text it matched."""

    clue: Clue
    where: Where
    quote: str

    @property
    def strength(self) -> int:
        return _STRENGTH[self.where]

    def describe(self) -> str:
        """One line saying which evidence ties the change to the symptom, quoting both sides."""
        said = f"{self.clue.ref} ({self.clue.source[:160]!r})"
        if self.where == "diff":
            return f"{said} names {self.clue.text!r}, and the diff changes it: {self.quote[:200]!r}"
        if self.where == "path":
            return f"{said} names {self.clue.text!r}, and the change edits {self.quote[:160]}"
        if self.where == "summary":
            return f"{said} names {self.clue.text!r}, as does its summary"
        if self.where == "context":
            around = self.quote[:200]
            return f"{said} names {self.clue.text!r}, and the diff edits the lines around it: {around!r}"
        return f"{said} names the service {self.clue.text!r}, which this change belongs to"


@dataclass
class Clues:
    """What the evidence names, and the services the incident's service depends on (name → why)."""

    service: str
    clues: list[Clue] = field(default_factory=list)
    dependencies: dict[str, str] = field(default_factory=dict)

    def add(self, clue: Clue) -> None:
        text = clue.text.strip()
        if (
            len(self.clues) >= MAX_CLUES
            or len(text) < 3
            or len(text) > MAX_CLUE_CHARS
            or text.lower() == self.service.lower()
        ):
            return
        if any(c.text.lower() == text.lower() and c.kind == clue.kind for c in self.clues):
            return
        self.clues.append(clue)


def _identifiers(text: str) -> Iterable[tuple[str, ClueKind]]:
    """The names in one evidence text, most specific first."""
    for m in _FILE.finditer(text):
        yield m.group(1), "file"
        yield PurePosixPath(m.group(1)).stem, "identifier"
    for m in _ROUTE.finditer(text):
        route = m.group(1).rstrip(".:")
        if route.count("/") < 1 or len(route) < 3:
            continue
        yield route, "route"
        for seg in route.strip("/").split("/"):
            if seg.lower() in _GENERIC_SEGMENTS or seg.startswith(("{", ":")) or _HEXISH.match(seg):
                continue
            yield seg, "segment"
    for m in _QUOTED.finditer(text):
        value = m.group(1).strip(".,;:()[]")
        if not _HEXISH.match(value):
            yield value, "identifier"
    for m in _IDENT.finditer(text):
        value = m.group(0).rstrip(".")
        if value.lower() in _GENERIC_IDENTIFIERS or _HEXISH.match(value):
            continue
        yield value, "identifier"
        if "." in value:  # a module path or dotted key: its specific parts name things too
            for part in value.split("."):
                if _IDENT.fullmatch(part):
                    yield part, "identifier"
    for m in _WORD.finditer(text):
        yield m.group(0), "word"


def _add_text(clues: Clues, text: str, ref: str) -> None:
    source = text[:MAX_SOURCE_CHARS]
    for value, kind in _identifiers(source):
        clues.add(Clue(value, kind, ref, source[:300]))


def gather_clues(
    service: str,
    *,
    logs: Sequence[tuple[int, LogLine]] = (),
    traces: Sequence[TraceRef] = (),
    labels: Mapping[str, str] | None = None,
    alertname: str = "",
    depends_on: Sequence[str] = (),
) -> Clues:
    """The names in new error lines (`logs` as (index, line)), error traces and alert labels, and
    the service's dependencies: configured ones (`depends_on`) and child spans' services."""
    clues = Clues(service=service)
    for i, line in logs:
        if line.labels.get("service") and line.labels["service"] != service:
            clues.add(Clue(line.labels["service"], "word", f"logs:{i}", line.line[:300]))
        _add_text(clues, line.line, f"logs:{i}")
    for trace in traces:
        if not trace.error:
            continue
        ref = f"traces:{trace.trace_id}"
        if trace.root_name:
            _add_text(clues, _METHOD.sub("", trace.root_name), ref)
        for span in trace.spans:
            if span.parent_service == service and span.service and span.service != service:
                clues.dependencies.setdefault(span.service, ref)
            if span.error:
                if span.service and span.service != service:
                    clues.add(Clue(span.service, "word", ref, f"{span.service}: {span.name}"[:300]))
                if span.name:
                    _add_text(clues, _METHOD.sub("", span.name), ref)
    for key, value in sorted((labels or {}).items()):
        if key in _SKIP_LABELS or key == "service" or not value:
            continue
        ref = f"alert:{alertname or 'labels'}"
        clues.add(Clue(value, "identifier", ref, f"{key}={value}"[:300]))
        _add_text(clues, value, ref)
    for dep in depends_on:
        clues.dependencies.setdefault(dep, "settings: depends_on")
    return clues


def _bounded(text: str) -> re.Pattern[str]:
    """`text` as a whole name: not part of a longer identifier (user_name is not username), nor
    one word of a hyphenated name (payments is not payments-api); `--text` as a flag still counts."""
    return re.compile(
        r"(?<![A-Za-z0-9_])(?<![A-Za-z0-9]-)" + re.escape(text) + r"(?![A-Za-z0-9_])(?!-[A-Za-z0-9])",
        re.IGNORECASE,
    )


def changed_lines(diff: str, *, context: bool = False) -> list[tuple[str, str]]:
    """(path, line) for every added or removed line of a unified diff, the +/- kept; with
    `context`, the unchanged lines of the hunks instead (their leading space kept)."""
    out: list[tuple[str, str]] = []
    path = ""
    hunk = False
    for line in diff.splitlines()[:MAX_DIFF_LINES]:
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        elif line.startswith(("--- ", "diff --git", "index ")):
            hunk = False
        elif line.startswith("@@"):
            hunk = True
        elif line.startswith(("+", "-")):
            if not context:
                out.append((path, line))
        elif context and hunk and line.startswith(" "):
            out.append((path, line))
    return out


def match_change(change: ChangeRef, clues: Clues) -> list[ChangeMatch]:
    """Every clue the change holds, strongest first (one match per clue, its strongest place)."""
    lines = [line for _, line in changed_lines(change.diff)]
    around = [line for _, line in changed_lines(change.diff, context=True)]
    other_service = change.service and change.service.lower() != clues.service.lower()
    found: list[ChangeMatch] = []
    for clue in clues.clues:
        best: ChangeMatch | None = None
        text = clue.text.lower()
        if other_service and text == change.service.lower():
            best = ChangeMatch(clue, "service", change.service)
        elif clue.kind == "word":
            continue  # plain words only ever name a service
        else:
            best = _match_clue(change, clue, lines, around)
        if best is not None:
            found.append(best)
    found.sort(key=lambda m: -m.strength)
    return found


def _match_clue(
    change: ChangeRef, clue: Clue, lines: Sequence[str], around: Sequence[str] = ()
) -> ChangeMatch | None:
    pattern = _bounded(clue.text)
    if clue.kind != "segment":  # a route segment is too short a word to trust inside code
        for line in lines:
            if pattern.search(line[1:]):
                return ChangeMatch(clue, "diff", line.strip()[:300])
    for path in change.paths:
        stem = PurePosixPath(path).stem.lower()
        if (clue.kind == "file" and (path == clue.text or path.endswith("/" + clue.text))) or (
            clue.kind in ("identifier", "segment") and stem == clue.text.lower()
        ):
            return ChangeMatch(clue, "path", path)
    if clue.kind != "file" and pattern.search(change.summary):
        return ChangeMatch(clue, "summary", change.summary[:200])
    if clue.kind == "identifier":  # a config key or name right beside the edit (the limit it raises)
        for line in around:
            if pattern.search(line):
                return ChangeMatch(clue, "context", line.strip()[:300])
    return None


def cosmetic(change: ChangeRef) -> str:
    """Why the change cannot alter behaviour ("" when it may): it only touches docs or tests,
    or its diff only changes comments or whitespace."""
    paths = change.paths
    if paths and all(_DOC_PATH.search(p) or _TEST_PATH.search(p) for p in paths):
        docs = any(_DOC_PATH.search(p) for p in paths)
        tests = any(_TEST_PATH.search(p) and not _DOC_PATH.search(p) for p in paths)
        return "only touches " + ("docs and tests" if docs and tests else "docs" if docs else "tests")
    code = [
        line
        for path, line in changed_lines(change.diff)
        if not (_DOC_PATH.search(path) or _TEST_PATH.search(path))
    ]
    if not code:
        return ""
    if all(not line[1:].strip() or _COMMENT.match(line[1:].strip()) for line in code):
        return "only changes comments"
    removed = "".join(line[1:] for line in code if line.startswith("-"))
    added = "".join(line[1:] for line in code if line.startswith("+"))
    if removed and re.sub(r"\s+", "", removed) == re.sub(r"\s+", "", added):
        return "only changes formatting"
    return ""
