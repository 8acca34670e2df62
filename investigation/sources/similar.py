"""Similar incidents: earlier closed incidents like this one, from the incident store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection

if TYPE_CHECKING:
    from connectors.incident_store import IncidentStore

#: Similar incidents shown at most.
LIMIT = 5


class SimilarIncidentsSource(EvidenceSource):
    """`store` opens the worker's one incident store on first use (None: no store, skipped)."""

    kind = "similar_incidents"

    def __init__(self, evidence: EvidenceSettings, store: Callable[[], IncidentStore] | None) -> None:
        super().__init__(evidence)
        self.store = store

    def _gather(self, subject: Subject) -> EvidenceSection:
        if self.store is None:
            return self.skipped("no incident store")
        view = subject.view
        found = self.store().similar(view, limit=LIMIT, exclude_id=view.id)
        if not found:
            return EvidenceSection(source=self.kind, status="empty", message="no similar incidents")
        return EvidenceSection(source=self.kind, status="ok", similar=found)
