"""Activity payloads for remediation, shared by the workflows and the activities."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.incident import IncidentView, TrackedAlert
from models.investigation import Investigation
from models.plan import Candidate, MatchResult, PlannedCheck, PlannedStep, PlannedVerify, RemediationPlan


class MatchRequest(BaseModel):
    incident_id: str
    alerts: list[TrackedAlert]


class ResolveRequest(BaseModel):
    """Resolve a candidate's `from: query` params and render its plan, for the alert it matched."""

    incident_id: str
    candidate: Candidate
    alert: TrackedAlert


class Resolution(BaseModel):
    """The candidate's rendered plan, or why it is ruled out (no result, a value its pattern refuses)."""

    plan: RemediationPlan | None = None
    reasons: list[str] = Field(default_factory=list)


class FiringRequest(BaseModel):
    fingerprint: str
    labels: dict[str, str]
    #: What the incident last heard from Alertmanager's webhook about this alert: a resolved
    #: notification is proof of resolution even when Alertmanager has just restarted.
    status: str = "firing"


class ChecksRequest(BaseModel):
    incident_id: str
    checks: list[PlannedCheck]


class CheckReport(BaseModel):
    ok: bool
    lines: list[str] = Field(default_factory=list)


class WorktreeRequest(BaseModel):
    incident_id: str
    repo: str


class WorktreeInfo(BaseModel):
    path: str
    branch: str
    fix_commit: str | None = None


class StepRequest(BaseModel):
    incident_id: str
    repo: str | None
    worktree: str | None
    step: PlannedStep
    alert_starts_at: datetime


class StepOutcome(BaseModel):
    ok: bool
    detail: str = ""
    changed: bool = True


class CommitRequest(BaseModel):
    incident_id: str
    repo: str
    worktree: str
    message: str


class VerifyRequest(BaseModel):
    incident_id: str
    verify: PlannedVerify
    alert: FiringRequest


class VerifyOutcome(BaseModel):
    ok: bool
    reason: str = ""
    samples: list[tuple[float, float | None]] = Field(default_factory=list)


class RollbackRequest(BaseModel):
    incident_id: str
    repo: str
    worktree: str
    deploy: list[PlannedStep]


class StepRecord(BaseModel):
    phase: str
    name: str
    status: Literal["ok", "failed", "skipped"]
    started: datetime
    seconds: float
    detail: str = ""


class RemediationInput(BaseModel):
    plan: RemediationPlan
    incident_id: str
    ticket_key: str
    parent_workflow_id: str
    alert: TrackedAlert
    approved_by: str | None = None
    activity_timeout_seconds: float = 120


class RemediationResult(BaseModel):
    outcome: Literal["healed", "rolled_back", "failed", "skipped"]
    reason: str = ""
    fix_commit: str | None = None
    rollback_commit: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)


class Progress(BaseModel):
    """A remediation step, as the child workflow reports it to its incident."""

    kind: str
    message: str
    stage: str | None = None
    #: When it happened, for the timeline; None (older workers) means when the incident heard of it.
    at: datetime | None = None


class ProgressBatch(BaseModel):
    """Several progress reports sent as one signal: one wake-up of the incident instead of one each."""

    items: list[Progress] = Field(min_length=1)


class InvestigationRequest(BaseModel):
    """What an investigator is given: the incident (with its evidence) and the playbook match."""

    view: IncidentView
    match: MatchResult | None = None
    #: The builtin investigation, handed to the LLM investigator as a starting point.
    prior: Investigation | None = None
