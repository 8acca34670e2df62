"""Ticket activity payloads: what the incident workflow asks the ticket activities to do."""

from __future__ import annotations

from pydantic import BaseModel, Field

from models.incident import IncidentView


class OpenTicketRequest(BaseModel):
    view: IncidentView
    workflow_url: str = ""


class EvidenceRequest(BaseModel):
    """What the gather activity needs: the incident as it stands and its workflow link."""

    view: IncidentView
    workflow_url: str = ""


class EscalationRequest(BaseModel):
    key: str
    incident_id: str
    severity: str
    #: 0 for the first escalation, then one per re-escalation; raises the priority one step each.
    level: int
    reason: str
    dedup_key: str


class CommentRequest(BaseModel):
    key: str
    incident_id: str = ""
    body: str
    dedup_key: str


class TransitionRequest(BaseModel):
    key: str
    incident_id: str = ""
    to_done: bool = False
    status: str | None = None


class CloseRequest(BaseModel):
    """Close an incident out in one activity: the closing comment, the final page, the move to
    done, and the record for similar-incident search (each part safe to repeat)."""

    comment: CommentRequest
    #: The incident as it closes (outcome and closed_at set), for the page and the record.
    page: EvidenceRequest


class CloseResult(BaseModel):
    """Parts that failed for good (`part: error`), for the timeline; retryable failures raise."""

    failed: list[str] = Field(default_factory=list)
