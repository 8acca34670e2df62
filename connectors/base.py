"""The small contracts of the connector layer: the error every connector raises, and the ticket
tracker interface.

`ConnectorError` carries `retryable`, because Temporal owns retries and an activity can only decide
well if every connector answers that question the same way. Each connector keeps its own subclass
(and its own default), so callers may catch `LokiError` or `TrackerError` by name, or any of them
as `ConnectorError`.

Every tracker method is idempotent so an activity retried after a crash never duplicates a side effect:
`create_or_update` searches by the incident's label first, and `comment` skips a comment whose
dedup marker is already on the ticket.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, Field

from models.incident import TicketRef
from pages.document import Document


class TicketContent(BaseModel):
    """What selfheal wants the ticket to say; trackers map it to their own fields.

    The description is a neutral `Document`: each tracker renders it in the one format it speaks
    (Markdown locally, wiki markup on Jira REST v2, ADF on v3), so callers never need to know which
    tracker, or which Jira API version, is configured.
    """

    incident_id: str
    summary: str = Field(max_length=250)
    page: Document
    priority: str = "Medium"
    labels: list[str] = Field(default_factory=list)
    assignee: str | None = None
    link_url: str | None = None
    link_title: str | None = None


class ConnectorError(Exception):
    """A call to an external system failed; `retryable` says whether another attempt can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class TrackerError(ConnectorError):
    """A tracker refused or failed a call; `retryable` tells the activity whether to try again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


def dedup_marker(dedup_key: str) -> str:
    """A marker appended to comments so a retried comment is recognised and skipped.

    Parentheses, not brackets: `[…]` is a link in Jira wiki markup and would be rewritten. The
    closing parenthesis keeps `…:1` from matching inside `…:10`.
    """
    return f"(selfheal-ref {dedup_key})"


class Tracker(ABC):
    """A ticket tracker: Jira in production, the local SQLite tracker by default."""

    name: str

    @abstractmethod
    def find_open_by_incident(self, incident_id: str) -> TicketRef | None:
        """The open ticket carrying this incident's label, if any."""

    @abstractmethod
    def create_or_update(self, content: TicketContent) -> TicketRef:
        """Create the incident's ticket, or update the one that already exists."""

    @abstractmethod
    def update_page(self, key: str, content: TicketContent) -> None:
        """Rewrite the summary and description of ticket `key`, whatever its status; never creates."""

    @abstractmethod
    def comment(self, key: str, body: str, dedup_key: str) -> bool:
        """Add a comment unless one with the same dedup key exists; True when added."""

    @abstractmethod
    def transition(self, key: str, status: str) -> bool:
        """Move the ticket to the named status; False when it is already there."""

    @abstractmethod
    def set_priority(self, key: str, priority: str) -> None:
        """Set the ticket's priority (escalations raise it)."""

    @abstractmethod
    def add_labels(self, key: str, labels: list[str]) -> None:
        """Add labels, e.g. the escalation queue's; never removes the incident label."""

    def assign(self, key: str, who: str) -> bool:
        """Assign the ticket to `who` (the tracker's own user id) unless it already is; True when
        changed. Trackers without people (the local one) ignore it."""
        return False

    @abstractmethod
    def attach(self, key: str, filename: str, data: bytes) -> bool:
        """Attach a file (graphs) unless one with that name and size is there; True when added."""
