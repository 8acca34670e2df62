"""The one contract every evidence source implements: public `gather`, private `_gather`.

`gather` does once what every source needs: it looks up the service's queries, fixes the time
window (from `lookback_seconds` before the alert start until now), turns any exception into a
`failed` section (evidence can only add to an incident, never fail it), and redacts and bounds
the section's message. A subclass only says what it asks (`_gather`, and `query` for the record
of a failed attempt); it gets its clients and settings in its constructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from connectors.base import ConnectorError
from investigation.settings import EvidenceSettings, ServiceEvidence
from models.evidence import EvidenceSection
from models.incident import IncidentView
from pages.redact import cap, redact

#: A failure is told in this many characters at most.
MAX_FAILURE_CHARS = 500
#: Any section's message is cut to this many characters.
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class Subject:
    """What one gathering is about: the incident, its service's queries and the time window."""

    view: IncidentView
    service: str
    queries: ServiceEvidence
    alert_start: datetime
    #: Logs and traces are read in [since, until]: `lookback_seconds` before the alert start, to now.
    since: datetime
    until: datetime


class EvidenceSource(ABC):
    """One kind of evidence (`kind` is its section's `source`); subclasses implement `_gather`."""

    kind: ClassVar[str]

    def __init__(self, evidence: EvidenceSettings) -> None:
        self.evidence = evidence

    def subject(self, view: IncidentView) -> Subject:
        ev = self.evidence
        start = view.alert_start()
        return Subject(
            view=view,
            service=view.service,
            queries=ev.services.get(view.service, ev.default_service),
            alert_start=start,
            since=start - timedelta(seconds=ev.lookback_seconds),
            until=datetime.now(UTC),
        )

    def gather(self, view: IncidentView) -> EvidenceSection:
        """This source's section about the incident; never raises."""
        subject: Subject | None = None
        try:
            subject = self.subject(view)
            section = self._gather(subject)
        except Exception as exc:  # a source must never fail the incident
            section = EvidenceSection(
                source=self.kind,
                status="failed",
                query=self._query_of(subject),
                message=failure_message(exc, emails=self.evidence.redact_emails),
            )
        if section.message:
            section.message = cap(self._redact(section.message), MAX_MESSAGE_CHARS)
        return section

    def query(self, subject: Subject) -> str:
        """What this source asks about the subject, recorded on a failed section; "" if nothing."""
        return ""

    @abstractmethod
    def _gather(self, subject: Subject) -> EvidenceSection:
        """The section; may raise, `gather` records the failure."""

    def skipped(self, message: str) -> EvidenceSection:
        return EvidenceSection(source=self.kind, status="skipped", message=message)

    def _redact(self, text: str) -> str:
        return redact(text, emails=self.evidence.redact_emails)

    def _query_of(self, subject: Subject | None) -> str:
        if subject is None:
            return ""
        try:
            return self.query(subject)
        except Exception:
            return ""


def failure_message(exc: Exception, *, emails: bool = False) -> str:
    """What failed, redacted and bounded: a connector's own message, anything else named by its type."""
    text = str(exc) if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
    return cap(redact(text, emails=emails), MAX_FAILURE_CHARS)
