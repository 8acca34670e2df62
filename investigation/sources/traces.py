"""Error traces of the service in the incident's window, from Tempo or Jaeger (whichever is set)."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.traces import TraceSearcher, trace_link
from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TracesSource(EvidenceSource):
    """Error traces with links to a trace UI (the client knows which); skipped without a backend."""

    kind = "traces"

    def __init__(self, evidence: EvidenceSettings, traces: TraceSearcher | None) -> None:
        super().__init__(evidence)
        self.traces = traces

    def query(self, subject: Subject) -> str:
        return _query(subject.service)

    def _gather(self, subject: Subject) -> EvidenceSection:
        if self.traces is None:
            return self.skipped("no tracing backend configured")
        return gather_traces(self.traces, subject.service, subject.since, subject.until)


def _query(service: str) -> str:
    return f"service={service} error=true"


def gather_traces(
    client: TraceSearcher,
    service: str,
    start: datetime,
    end: datetime,
    *,
    limit: int = 20,
    ui_url: str | None = None,
) -> EvidenceSection:
    """Error traces of `service` in [start, end], newest first; `ui_url` overrides the client's links.

    A failed search raises (TracesError); `TracesSource.gather` records it.
    """
    query = _query(service)
    refs = client.search(service, start, end, limit=limit)
    if not refs:
        return EvidenceSection(source="traces", status="empty", query=query, message="no error traces")
    if ui_url is not None:
        refs = [r.model_copy(update={"url": trace_link(ui_url, r.trace_id)}) for r in refs]
    refs.sort(key=lambda r: r.started or _EPOCH, reverse=True)
    return EvidenceSection(
        source="traces", status="ok", query=query, message=f"{len(refs)} error traces", traces=refs
    )
