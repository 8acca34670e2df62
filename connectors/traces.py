"""Error traces of a service around an incident, from Tempo (`GET /api/search`) or Jaeger
(`GET /api/traces`), each with a link to open it in a trace UI.

Time units differ per backend: Tempo's search takes Unix seconds, Jaeger's query API
microseconds. A failed search raises TracesError; the traces evidence source
(`investigation.sources.traces`) records it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from connectors.base import ConnectorError
from connectors.tenant_http import TenantHttpClient
from models.evidence import SpanRef, TraceRef

_RETRYABLE_STATUS = frozenset({408, 429})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TracesError(ConnectorError):
    """A trace search failed; `retryable` says whether another attempt can help."""


class TraceSearcher(Protocol):
    def search(self, service: str, start: datetime, end: datetime, limit: int = 20) -> list[TraceRef]: ...


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def to_seconds(at: datetime) -> int:
    return int((_aware(at) - _EPOCH) // timedelta(seconds=1))


def to_micros(at: datetime) -> int:
    return int((_aware(at) - _EPOCH) // timedelta(microseconds=1))


def trace_link(ui_url: str, trace_id: str) -> str:
    """`ui_url` with `{trace_id}` filled in, or `<ui_url>/trace/<id>` (Jaeger UI's path); "" if unset."""
    if not ui_url:
        return ""
    if "{trace_id}" in ui_url:
        return ui_url.replace("{trace_id}", quote(trace_id, safe=""))
    return f"{ui_url.rstrip('/')}/trace/{quote(trace_id, safe='')}"


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _HttpBackend(TenantHttpClient):
    name = "traces"

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] | None = None,
        tenant: str | None = None,
        ui_url: str = "",
    ) -> None:
        super().__init__(url, timeout, headers=headers, tenant=tenant)
        self.ui_url = ui_url

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        try:
            response = self._client.get(path, params=params)
        except httpx.TransportError as exc:
            raise TracesError(f"{self.name} {self.url}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            status = response.status_code
            raise TracesError(
                f"{self.name} GET {path}: HTTP {status}: {response.text.strip()[:300]}",
                retryable=status >= 500 or status in _RETRYABLE_STATUS,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise TracesError(f"{self.name} GET {path}: answer is not JSON: {exc}", retryable=False) from exc


class TempoClient(_HttpBackend):
    """Grafana Tempo's search API; `ui_url` e.g. a Grafana explore URL template with `{trace_id}`."""

    name = "tempo"

    def search(self, service: str, start: datetime, end: datetime, limit: int = 20) -> list[TraceRef]:
        params = {
            "tags": f"service.name={_logfmt_value(service)} status=error",
            "start": str(to_seconds(start)),
            "end": str(to_seconds(end)),
            "limit": str(limit),
        }
        body = self._get("/api/search", params)
        try:
            refs = []
            for trace in body.get("traces") or []:
                trace_id = str(trace["traceID"])
                started_ns = trace.get("startTimeUnixNano")
                refs.append(
                    TraceRef(
                        trace_id=trace_id,
                        root_service=str(trace.get("rootServiceName", "")),
                        root_name=str(trace.get("rootTraceName", "")),
                        duration_ms=float(trace.get("durationMs") or 0.0),
                        started=_EPOCH + timedelta(microseconds=int(started_ns) // 1000)
                        if started_ns
                        else None,
                        error=True,
                        url=trace_link(self.ui_url, trace_id),
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TracesError(
                f"tempo search: unexpected answer ({type(exc).__name__}: {exc})", retryable=False
            ) from exc
        return refs


#: Spans kept per trace (failing ones first): enough to see who calls whom, bounded.
MAX_SPANS = 50


def _span_refs(spans: list[dict[str, Any]], processes: dict[str, Any]) -> list[SpanRef]:
    """Each span's service, name, parent span's service and status; the failing ones first."""

    def service(span: dict[str, Any]) -> str:
        return str((processes.get(str(span.get("processID", ""))) or {}).get("serviceName", ""))

    by_id = {str(s.get("spanID", "")): s for s in spans}
    refs: list[SpanRef] = []
    for span in spans:
        parent = next(
            (
                by_id.get(str(r.get("spanID", "")))
                for r in span.get("references") or []
                if r.get("refType") == "CHILD_OF"
            ),
            None,
        )
        tags = {str(t.get("key")): t.get("value") for t in span.get("tags") or [] if isinstance(t, dict)}
        refs.append(
            SpanRef(
                service=service(span),
                name=str(span.get("operationName", ""))[:200],
                parent_service=service(parent) if parent is not None else "",
                status=str(tags.get("otel.status_code", ""))[:40],
                error=any(_is_error_tag(t) for t in span.get("tags") or []),
            )
        )
    refs.sort(key=lambda r: not r.error)
    return refs[:MAX_SPANS]


def _is_error_tag(tag: Any) -> bool:
    return isinstance(tag, dict) and tag.get("key") == "error" and str(tag.get("value")).lower() == "true"


class JaegerClient(_HttpBackend):
    """Jaeger query's HTTP API (the one its UI uses); links default to Jaeger's own UI."""

    name = "jaeger"

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] | None = None,
        tenant: str | None = None,
        ui_url: str | None = None,
    ) -> None:
        super().__init__(url, timeout, headers=headers, tenant=tenant, ui_url="")
        self.ui_url = self.url if ui_url is None else ui_url

    def search(self, service: str, start: datetime, end: datetime, limit: int = 20) -> list[TraceRef]:
        params = {
            "service": service,
            "start": str(to_micros(start)),
            "end": str(to_micros(end)),
            "limit": str(limit),
            "tags": json.dumps({"error": "true"}),
        }
        body = self._get("/api/traces", params)
        if body.get("errors"):
            raise TracesError(f"jaeger search: {body['errors']!r:.300}", retryable=False)
        try:
            return [self._ref(trace) for trace in body.get("data") or []]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TracesError(
                f"jaeger search: unexpected answer ({type(exc).__name__}: {exc})", retryable=False
            ) from exc

    def _ref(self, trace: dict[str, Any]) -> TraceRef:
        trace_id = str(trace["traceID"])
        spans: list[dict[str, Any]] = list(trace.get("spans") or [])
        processes: dict[str, Any] = trace.get("processes") or {}
        if not spans:
            return TraceRef(trace_id=trace_id, url=trace_link(self.ui_url, trace_id))
        roots = [
            s for s in spans if not any(r.get("refType") == "CHILD_OF" for r in s.get("references") or [])
        ]
        root = min(roots or spans, key=lambda s: int(s["startTime"]))
        first = min(int(s["startTime"]) for s in spans)
        last = max(int(s["startTime"]) + int(s.get("duration", 0)) for s in spans)
        process = processes.get(str(root.get("processID", ""))) or {}
        return TraceRef(
            trace_id=trace_id,
            root_service=str(process.get("serviceName", "")),
            root_name=str(root.get("operationName", "")),
            duration_ms=(last - first) / 1000.0,
            started=_EPOCH + timedelta(microseconds=first),
            error=any(_is_error_tag(t) for s in spans for t in s.get("tags") or []),
            url=trace_link(self.ui_url, trace_id),
            spans=_span_refs(spans, processes),
        )
