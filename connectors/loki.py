"""Loki's `GET /loki/api/v1/query_range`: the log lines of a LogQL query, newest first.

I/O only: folding, redacting and bounding the lines into evidence is the logs evidence source's
job (`investigation.sources.logs`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx

from connectors.base import ConnectorError
from connectors.tenant_http import TenantHttpClient
from models.evidence import LogLine

_RETRYABLE_STATUS = frozenset({408, 429})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
