"""Suspect changes: recent commits in the watched repositories (`investigation.changes` reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from investigation.changes import gather_changes
from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection


class ChangesSource(EvidenceSource):
    """Commits in the window before the alert start, the service's own paths first."""

    kind = "changes"

    def __init__(self, evidence: EvidenceSettings, repos: Mapping[str, Path]) -> None:
        super().__init__(evidence)
        #: Repository name → local clone.
        self.repos = dict(repos)

    def _gather(self, subject: Subject) -> EvidenceSection:
        ev = self.evidence
        own = subject.service
        # Other services' paths, so a change is attributed to the service it belongs to.
        others = {
            name: [p.replace("{service}", name) for p in queries.paths]
            for name, queries in ev.services.items()
            if name != own
        }
        return gather_changes(
            self.repos,
            before=subject.alert_start,
            window_seconds=ev.change_window_seconds,
            service_paths=[p.replace("{service}", own) for p in subject.queries.paths],
            emails=ev.redact_emails,
            service=own,
            other_services=others,
            service_templates=[p for p in ev.default_service.paths if "{service}" in p],
            depends_on=subject.queries.depends_on,
        )
