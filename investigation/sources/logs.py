"""Logs evidence: Loki when the service has a LogQL template, else its log command, else skipped.

Raw lines become a section: lines that differ only in numbers, hex ids or UUIDs are folded into
one with a count, the newest come first, every line is redacted, and the section is bounded in
lines and bytes (`max_log_lines`, `max_log_bytes`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from connectors.commands import run_command
from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection, LogLine
from pages.redact import cap, redact

#: One line longer than this is cut (a stack trace in one JSON field, a dumped request body).
MAX_LINE_CHARS = 2000
#: A service name that may be placed inside a command argument (it comes from alert labels).
SAFE_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: Environment variables a log command inherits from the worker; nothing else (no secrets).
_COMMAND_ENV = ("PATH", "LANG", "HOME")

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?:0x[0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})\b")
_DIGITS = re.compile(r"\d+")


class LogQuerier(Protocol):
    def query_range(self, logql: str, start: datetime, end: datetime, limit: int = 500) -> list[LogLine]: ...


class LogsSource(EvidenceSource):
    """`loki` is the Loki client when one is configured; the log command needs no client."""

    kind = "logs"

    def __init__(self, evidence: EvidenceSettings, loki: LogQuerier | None) -> None:
        super().__init__(evidence)
        self.loki = loki

    def query(self, subject: Subject) -> str:
        if self.loki is not None and subject.queries.logql:
            return subject.queries.logql.replace("{service}", subject.service)
        return " ".join(self._argv(subject))

    def _argv(self, subject: Subject) -> list[str]:
        return [a.replace("{service}", subject.service) for a in subject.queries.log_command]

    def _gather(self, subject: Subject) -> EvidenceSection:
        ev = self.evidence
        queries = subject.queries
        if self.loki is not None and queries.logql:
            return gather_logs(
                self.loki,
                queries.logql.replace("{service}", subject.service),
                subject.since,
                subject.until,
                max_lines=ev.max_log_lines,
                max_bytes=ev.max_log_bytes,
                emails=ev.redact_emails,
            )
        if queries.log_command:
            if not SAFE_SERVICE.fullmatch(subject.service):
                return self.skipped(f"service {subject.service!r} is not safe in a command")
            env = {k: os.environ[k] for k in _COMMAND_ENV if k in os.environ}
            return gather_command_logs(
                self._argv(subject),
                ev.timeout_seconds,
                env=env,
                max_lines=ev.max_log_lines,
                max_bytes=ev.max_log_bytes,
                emails=ev.redact_emails,
            )
        return self.skipped("no log source configured")


def normalise(line: str) -> str:
    """The shape of a line: UUIDs, hex ids and numbers replaced, so repeats of one event match."""
    line = _UUID.sub("<uuid>", line)
    line = _HEX.sub("<hex>", line)
    return _DIGITS.sub("<n>", line)


def summarise(
    lines: Iterable[LogLine],
    *,
    source: str = "logs",
    query: str = "",
    max_lines: int = 200,
    max_bytes: int = 20_000,
    emails: bool = False,
) -> EvidenceSection:
    """Fold, order (newest first), redact and bound `lines` into an evidence section."""
    groups: dict[str, LogLine] = {}
    total = 0
    for item in sorted(lines, key=lambda x: x.at, reverse=True):
        total += 1
        text = redact(item.line.rstrip("\r\n"), emails=emails)
        key = normalise(text)
        seen = groups.get(key)
        if seen is not None:
            seen.count += item.count
            seen.first_at = min(seen.first_at or seen.at, item.first_at or item.at)
            continue
        labels = {k: redact(v, emails=emails) for k, v in item.labels.items()}
        groups[key] = LogLine(
            at=item.at, line=text, labels=labels, count=item.count, first_at=item.first_at or item.at
        )
    if not groups:
        return EvidenceSection(source=source, status="empty", query=query, message="no log lines")
    kept: list[LogLine] = []
    used = 0
    truncated = False
    for item in groups.values():
        if len(kept) >= max_lines:
            truncated = True
            break
        text = cap(item.line, MAX_LINE_CHARS)
        size = len(text.encode())
        if used + size > max_bytes:
            room = max_bytes - used
            if kept or room <= 0:
                truncated = True
                break
            text = cap(text, room)  # characters ≤ bytes: the first line always fits
            while len(text.encode()) > room and text:
                text = cap(text, len(text) - 1)
            size = len(text.encode())
        truncated = truncated or text != item.line
        kept.append(item.model_copy(update={"line": text}))
        used += size
    message = f"{total} lines, {len(groups)} distinct; showing {len(kept)}"
    if truncated:
        message += f" (capped at {max_lines} lines / {max_bytes} bytes)"
    return EvidenceSection(
        source=source, status="truncated" if truncated else "ok", query=query, message=message, logs=kept
    )


def gather_logs(
    client: LogQuerier,
    logql: str,
    start: datetime,
    end: datetime,
    *,
    max_lines: int = 200,
    max_bytes: int = 20_000,
    fetch_limit: int = 1000,
    emails: bool = False,
) -> EvidenceSection:
    """The log lines of `logql` in [start, end] as evidence; a failed query raises (LokiError)."""
    lines = client.query_range(logql, start, end, limit=fetch_limit)
    return summarise(lines, query=logql, max_lines=max_lines, max_bytes=max_bytes, emails=emails)


def gather_command_logs(
    argv: list[str],
    timeout: float,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    source: str = "logs",
    max_lines: int = 200,
    max_bytes: int = 20_000,
    emails: bool = False,
    newest_first: bool = False,
) -> EvidenceSection:
    """Log lines from a command's stdout (e.g. `kubectl logs`, `journalctl`) as evidence.

    The command runs without a shell and without the worker's environment (`env` is all it gets).
    Its output is taken as oldest first, as log tools print, unless `newest_first`; the lines carry
    no timestamps of their own, so each gets the time of the run. A non-zero exit or a timeout is a
    `failed` section; a command that cannot start raises (CommandError).
    """
    query = " ".join(argv)
    result = run_command(argv, cwd=cwd or Path.cwd(), env=dict(env or {}), timeout=timeout, sandbox=False)
    if not result.ok:
        why = f"timed out after {timeout:g}s" if result.timed_out else f"exit status {result.returncode}"
        detail = cap(redact(result.stderr.strip(), emails=emails), 500)
        return EvidenceSection(
            source=source, status="failed", query=query, message=f"{why}: {detail}" if detail else why
        )
    now = datetime.now(UTC)
    texts = [t for t in result.stdout.splitlines() if t.strip()]
    if not newest_first:
        texts.reverse()
    # Equal timestamps: a stable sort keeps this order, so the first line stays the newest.
    section = summarise(
        (LogLine(at=now, line=t) for t in texts),
        source=source,
        query=query,
        max_lines=max_lines,
        max_bytes=max_bytes,
        emails=emails,
    )
    if result.truncated and section.status == "ok":
        section.status = "truncated"
        section.message += " (command output was cut)"
    return section
