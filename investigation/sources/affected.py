"""Affected users: one instant PromQL per service (its `affected_users` template), summed."""

from __future__ import annotations

from typing import Protocol

from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection


class InstantQuerier(Protocol):
    def query(self, promql: str) -> list[float]: ...


class AffectedUsersSource(EvidenceSource):
    """How many users the incident touches, when the service has a query for it."""

    kind = "affected_users"

    def __init__(self, evidence: EvidenceSettings, prometheus: InstantQuerier | None) -> None:
        super().__init__(evidence)
        self.prometheus = prometheus

    def _gather(self, subject: Subject) -> EvidenceSection:
        template = subject.queries.affected_users
        if self.prometheus is None or not template:
            return self.skipped("no query configured")
        query = template.replace("{service}", subject.service)
        values = self.prometheus.query(query)
        if not values:
            return EvidenceSection(source=self.kind, status="empty", query=query)
        return EvidenceSection(
            source=self.kind, status="ok", query=query, figures={"affected users": float(sum(values))}
        )
