"""Shared pydantic models: the Alertmanager webhook contract and the incident's public shape.

They live in the app package so the API, the workflow and the activities agree on one schema,
and the pydantic data converter carries them through Temporal unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.coding import CodingResult
from models.evidence import Evidence
from models.investigation import Investigation

#: Alertmanager sends this for firing alerts: "no end yet".
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class WebhookAlert(BaseModel):
    """One alert inside an Alertmanager webhook notification (version 4)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=128)

    @field_validator("endsAt", mode="after")
    @classmethod
    def _zero_is_no_end(cls, value: datetime | None) -> datetime | None:
        """Alertmanager's `0001-01-01T00:00:00Z` means "no end" for a firing alert."""
        if value is not None and value.year <= 1:
            return None
        return value

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class AlertmanagerWebhook(BaseModel):
    """The body Alertmanager POSTs to a `webhook_configs` receiver (version "4")."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1)


class Stage(StrEnum):
    """The incident's state machine; later issues fill in the middle stages."""

    RECEIVED = "received"
    TICKETED = "ticketed"
    INVESTIGATING = "investigating"
    REMEDIATING = "remediating"
    VERIFYING = "verifying"
    ESCALATED = "escalated"
    AWAITING_DECISION = "awaiting_decision"
    CLOSED = "closed"


class Outcome(StrEnum):
    """How an incident ended."""

    HEALED = "healed"
    HEALED_AFTER_APPROVAL = "healed_after_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    RESOLVED = "resolved"


class DecisionKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Decision(BaseModel):
    """A human's decision on an escalated incident."""

    decision: DecisionKind
    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=10_000)
    source: str = Field(default="api", max_length=40)
    #: The digest (or a prefix of at least 8 hex digits) of the plan the approver saw; an approval
    #: carrying one runs only if the incident's plan still has that digest.
    plan_digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{8,64}$")


class RefusedDecision(BaseModel):
    """A decision that did not count (not an approver, an unknown Jira user): recorded on the
    incident's timeline so the people reading it see who tried and why it was refused."""

    decision: DecisionKind
    by: str = Field(min_length=1, max_length=200)
    #: How the person authenticated, or the channel it came from (`jira`, `API token`, `ui`…).
    via: str = Field(default="", max_length=40)
    reason: str = Field(max_length=1000)
    #: One timeline entry per refused attempt, however often it is redelivered.
    dedup: str = Field(max_length=200)


class Notification(BaseModel):
    """One webhook notification as recorded in the workflow (signal payload)."""

    received_at: datetime
    notification: AlertmanagerWebhook


class TicketRef(BaseModel):
    """Where the incident's ticket lives."""

    key: str
    url: str
    tracker: str


class TimelineEvent(BaseModel):
    at: datetime
    kind: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class TrackedAlert(BaseModel):
    """An alert as the incident currently knows it, keyed by fingerprint."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""

    @classmethod
    def of(cls, alert: WebhookAlert) -> TrackedAlert:
        return cls(
            fingerprint=alert.fingerprint,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            startsAt=alert.startsAt,
            endsAt=alert.endsAt,
            generatorURL=alert.generatorURL,
        )


class Proposal(BaseModel):
    """The fix a playbook (or an investigation's proposal) plans for this incident, as humans see it
    before deciding."""

    playbook: str
    mode: str
    target: str
    params: dict[str, str] = Field(default_factory=dict)
    steps: list[str] = Field(default_factory=list)
    #: sha256 of the plan's canonical JSON (`models.plan.plan_digest`): what an approval may pin.
    digest: str = ""
    #: `playbook`, or where a proposal's plan came from: `revert` or `patch` of the investigation.
    kind: str = "playbook"
    #: What the plan is for, in a line (a proposal: which change it reverts or patches).
    description: str = ""


class RemediationSummary(BaseModel):
    playbook: str
    outcome: str
    reason: str = ""
    fix_commit: str | None = None
    approved_by: str | None = None
    seconds: float = 0.0


class IncidentView(BaseModel):
    """The incident as the API, the CLI and the workflow query show it."""

    id: str
    group_id: str
    group_key: str
    receiver: str
    stage: Stage
    status: Literal["firing", "resolved"]
    outcome: Outcome | None = None
    service: str = ""
    severity: str = ""
    alertname: str = ""
    title: str = ""
    opened_at: datetime
    closed_at: datetime | None = None
    ticket: TicketRef | None = None
    alerts: list[TrackedAlert] = Field(default_factory=list)
    decision: Decision | None = None
    proposal: Proposal | None = None
    evidence: Evidence | None = None
    investigation: Investigation | None = None
    #: The coding agent's draft patch (when it ran: no revert applied and it is enabled).
    coding: CodingResult | None = None
    remediations: list[RemediationSummary] = Field(default_factory=list)
    escalations: int = 0
    notifications: int = 0
    #: Alerts of the group the last notification left out (Alertmanager's `truncatedAlerts`, plus
    #: those selfheal dropped beyond `max_alerts_per_notification`).
    truncated_alerts: int = 0
    timeline: list[TimelineEvent] = Field(default_factory=list)

    def alert_start(self) -> datetime:
        """When the incident's alerts started: the earliest firing one (any, if all resolved), UTC-aware."""
        firing = [a for a in self.alerts if a.status == "firing"] or self.alerts
        start = min((a.startsAt for a in firing), default=self.opened_at)
        return start if start.tzinfo else start.replace(tzinfo=UTC)


class IncidentSummary(BaseModel):
    """A row of the incident list, read from Temporal visibility (no worker needed)."""

    id: str
    stage: str
    status: str
    outcome: str | None = None
    service: str = ""
    severity: str = ""
    alertname: str = ""
    title: str = ""
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    ticket_key: str | None = None
    ticket_url: str | None = None
