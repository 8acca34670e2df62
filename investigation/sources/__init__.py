"""Evidence sources: one per kind, each behind `EvidenceSource.gather` (see `base`).

`build_evidence_sources` lists them in the order the ticket shows them; the worker gives it the
clients and the evidence activity only calls `gather` on each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from connectors.traces import TraceSearcher
from investigation.settings import EvidenceSettings
from investigation.sources.affected import AffectedUsersSource, InstantQuerier
from investigation.sources.base import EvidenceSource, Subject
from investigation.sources.changes import ChangesSource
from investigation.sources.logs import LogQuerier, LogsSource
from investigation.sources.metrics import MetricsSource, RangeQuerier
from investigation.sources.similar import SimilarIncidentsSource
from investigation.sources.traces import TracesSource

if TYPE_CHECKING:
    from connectors.incident_store import IncidentStore

__all__ = [
    "AffectedUsersSource",
    "ChangesSource",
    "EvidenceSource",
    "LogsSource",
    "MetricsSource",
    "SimilarIncidentsSource",
    "Subject",
    "TracesSource",
    "build_evidence_sources",
]


class PromQuerier(RangeQuerier, InstantQuerier, Protocol):
    """A Prometheus client: range queries for graphs, instant ones for figures."""


def build_evidence_sources(
    evidence: EvidenceSettings,
    *,
    prometheus: PromQuerier | None,
    loki: LogQuerier | None,
    traces: TraceSearcher | None,
    repos: Mapping[str, Path],
    store: Callable[[], IncidentStore] | None,
) -> list[EvidenceSource]:
    """Every source, in ticket order; none when evidence is disabled (`evidence.enabled: false`).

    `repos` maps repository names to local clones whose recent commits are suspects; `store` opens
    the incident store on first use.
    """
    if not evidence.enabled:
        return []
    return [
        MetricsSource(evidence, prometheus),
        AffectedUsersSource(evidence, prometheus),
        LogsSource(evidence, loki),
        TracesSource(evidence, traces),
        ChangesSource(evidence, repos),
        SimilarIncidentsSource(evidence, store),
    ]
