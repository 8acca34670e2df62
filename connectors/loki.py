"""Logs around an incident: Loki's `GET /loki/api/v1/query_range`, or any log CLI's stdout.

`gather_logs` turns raw lines into an `EvidenceSection`: lines that differ only in numbers, hex
ids or UUIDs are folded into one with a count, the newest come first, every line is redacted,
and the section is bounded in lines and bytes. It never raises: a failed source is recorded in
the section, because evidence can only add to an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx

from connectors.commands import CommandError, run_command
from connectors.errors import ConnectorError
from connectors.tenant_http import TenantHttpClient
from models.evidence import EvidenceSection, LogLine
from pages.redact import cap, redact

_RETRYABLE_STATUS = frozenset({408, 429})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: One line longer than this is cut (a stack trace in one JSON field, a dumped request body).
MAX_LINE_CHARS = 2000

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?:0x[0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})\b")
_DIGITS = re.compile(r"\d+")


class LokiError(ConnectorError):
    """A Loki query failed; `retryable` is False for a query Loki rejected (bad LogQL, bad range)."""


def to_ns(at: datetime) -> int:
    """Unix time in nanoseconds, exactly (a naive datetime is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


class LokiClient(TenantHttpClient):
    """One Loki (or its query frontend); `tenant` is sent as `X-Scope-OrgID`."""

    def query_range(
        self,
        logql: str,
        start: datetime,
        end: datetime,
        limit: int = 500,
        direction: Literal["backward", "forward"] = "backward",
    ) -> list[LogLine]:
        """Log lines of a LogQL log query in [start, end], newest first, labels from their stream."""
        params = {
            "query": logql,
            "start": str(to_ns(start)),
            "end": str(to_ns(end)),
            "limit": str(limit),
            "direction": direction,
        }
        try:
            response = self._client.get("/loki/api/v1/query_range", params=params)
        except httpx.TransportError as exc:
            raise LokiError(f"loki {self.url}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            status = response.status_code
            raise LokiError(
                f"loki query_range: HTTP {status}: {response.text.strip()[:300]}",
                retryable=status >= 500 or status in _RETRYABLE_STATUS,
            )
        try:
            body = response.json()
            data = body["data"]
            if body.get("status") != "success":
                raise LokiError(f"loki query_range: status {body.get('status')!r}", retryable=False)
            if data.get("resultType") != "streams":
                raise LokiError(
                    f"loki query_range: {logql!r} is a metric query (resultType {data.get('resultType')!r});"
                    " use a log query",
                    retryable=False,
                )
            lines = [
                LogLine(
                    at=from_ns(int(value[0])), line=str(value[1]), labels=dict(stream.get("stream") or {})
                )
                for stream in data.get("result") or []
                for value in stream.get("values") or []
            ]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise LokiError(
                f"loki query_range: unexpected answer ({type(exc).__name__}: {exc})", retryable=False
            ) from exc
        lines.sort(key=lambda item: item.at, reverse=True)
        return lines


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
    client: LokiClient,
    logql: str,
    start: datetime,
    end: datetime,
    *,
    max_lines: int = 200,
    max_bytes: int = 20_000,
    fetch_limit: int = 1000,
    emails: bool = False,
) -> EvidenceSection:
    """The log lines of `logql` around the incident as evidence; errors become `status="failed"`."""
    try:
        lines = client.query_range(logql, start, end, limit=fetch_limit)
    except LokiError as exc:
        return EvidenceSection(source="logs", status="failed", query=logql, message=redact(str(exc)))
    except Exception as exc:  # evidence never raises: a bug in one source must not sink the incident
        return EvidenceSection(
            source="logs", status="failed", query=logql, message=redact(f"{type(exc).__name__}: {exc}")
        )
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
    no timestamps of their own, so each gets the time of the run.
    """
    query = " ".join(argv)
    try:
        result = run_command(argv, cwd=cwd or Path.cwd(), env=dict(env or {}), timeout=timeout, sandbox=False)
    except CommandError as exc:
        return EvidenceSection(source=source, status="failed", query=query, message=redact(str(exc)))
    except Exception as exc:
        return EvidenceSection(
            source=source, status="failed", query=query, message=redact(f"{type(exc).__name__}: {exc}")
        )
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
