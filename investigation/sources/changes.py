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
        return gather_changes(
            self.repos,
            before=subject.alert_start,
            window_seconds=self.evidence.change_window_seconds,
            service_paths=[p.replace("{service}", subject.service) for p in subject.queries.paths],
            emails=self.evidence.redact_emails,
        )
