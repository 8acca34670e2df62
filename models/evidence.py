"""Evidence about an incident: what each source found, bounded in size, secrets redacted.

Every gatherer returns an `EvidenceSection`; a source that fails or is not configured is
recorded in the section (`status`), never raised, so evidence can only add to an incident.
The investigator and the ticket renderer read these models; nothing here does I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

SourceStatus = Literal["ok", "empty", "failed", "skipped", "truncated"]


class LogLine(BaseModel):
    at: datetime
    line: str
    labels: dict[str, str] = Field(default_factory=dict)
    #: How many identical lines (after normalisation) this one stands for.
    count: int = 1
    #: The oldest of those lines (`at` is the newest): tells a new error from old background noise.
    first_at: datetime | None = None


class SpanRef(BaseModel):
    """One span of a trace: whose it is, under whose span it ran, and whether it failed.

    Parent/child services tell which services the incident's service calls (its dependencies).
    """

    service: str = ""
    name: str = ""
    #: The service of the parent span ("" for a root span).
    parent_service: str = ""
    status: str = ""
    error: bool = False
    #: The failure's message (an error tag or status message), when the span says one.
    message: str = ""

    @model_validator(mode="before")
    @classmethod
    def _error_text(cls, data: Any) -> Any:
        """`error: "timeout 2000ms"` (recorded cases, some tracers) means a failed span with that message."""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            text = data["error"].strip()
            data = {**data, "error": bool(text) and text.lower() != "false"}
            if text and text.lower() not in ("true", "false"):
                data.setdefault("message", text)
        return data


class TraceRef(BaseModel):
    trace_id: str
    root_service: str = ""
    root_name: str = ""
    duration_ms: float = 0.0
    started: datetime | None = None
    error: bool = True
    url: str = ""
    #: Some of the trace's spans (bounded), errors first; empty when the backend gave none.
    spans: list[SpanRef] = Field(default_factory=list)


class ChangeRef(BaseModel):
    """A commit in a watched repository shortly before the alert started."""

    repo: str
    sha: str
    author: str
    committed_at: datetime
    summary: str
    paths: list[str] = Field(default_factory=list)
    insertions: int = 0
    deletions: int = 0
    #: Higher is more suspect: closeness to the alert start and touching the service's paths.
    score: float = 0.0
    #: Whether the commit touches the service's configured paths.
    touches_service: bool = False
    #: The incident whose fix this commit is (its `Selfheal-Incident` trailer), when selfheal made it.
    selfheal_incident: str = ""
    url: str = ""
    #: The service whose configured paths the commit touches ("" when none is known).
    service: str = ""
    #: The changed lines as `git show` prints them (bounded, redacted), for investigators to cite.
    diff: str = ""


class SimilarIncident(BaseModel):
    incident_id: str
    title: str
    outcome: str
    fix: str = ""
    score: float
    closed_at: datetime | None = None
    url: str = ""


class MetricSeries(BaseModel):
    name: str
    query: str
    points: list[tuple[float, float]] = Field(default_factory=list)
    #: PNG of the series with the alert start marked, when rendered.
    graph_png: bytes | None = None
    #: The ticket attachment holding that PNG, once attached (`<incident id>-graph-<n>.png`).
    graph: str = ""


class EvidenceSection(BaseModel):
    source: str
    status: SourceStatus
    message: str = ""
    query: str = ""
    logs: list[LogLine] = Field(default_factory=list)
    traces: list[TraceRef] = Field(default_factory=list)
    changes: list[ChangeRef] = Field(default_factory=list)
    similar: list[SimilarIncident] = Field(default_factory=list)
    metrics: list[MetricSeries] = Field(default_factory=list)
    #: Numbers with the query that produced them, e.g. affected users.
    figures: dict[str, float] = Field(default_factory=dict)
    #: The services the incident's service depends on, as configured (`services.<name>.depends_on`);
    #: set on the changes section, so a change in one of them is weighed as a suspect.
    depends_on: list[str] = Field(default_factory=list)


class Evidence(BaseModel):
    incident_id: str
    gathered_at: datetime
    sections: list[EvidenceSection] = Field(default_factory=list)
