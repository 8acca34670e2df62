"""Activity payloads for remediation, shared by the workflows and the activities."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.incident import IncidentView, TrackedAlert
from models.investigation import Investigation, ProposedFix
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
    #: What the deploy put on the branch before this step (for `gitops_sync`); None otherwise.
    revision: str | None = None


class StepOutcome(BaseModel):
    ok: bool
    detail: str = ""
    changed: bool = True
    #: A deploy step's commit on the deployed branch (a `git_push`), for a later `gitops_sync`.
    revision: str | None = None


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
    #: Who approved by merging the pull request (`merge_approves`), when that was the approval.
    approved_by: str | None = None


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


class ProposalRequest(BaseModel):
    """Plan an investigation's proposed fix (a revert or a patch) for the incident's service."""

    incident_id: str
    fix: ProposedFix
    alert: TrackedAlert
    service: str
    #: The alert label naming the service (the first of `incident.service_labels` it carries).
    service_label: str
    #: Who proposed it (the investigator's name), for the plan's description.
    investigator: str = ""


class ProposalPlan(BaseModel):
    """The proposal's plan (policy `approve`), or why it cannot run (`reasons`); neither when the
    proposal has nothing selfheal can run (a manual step)."""

    plan: RemediationPlan | None = None
    #: `revert` or `patch`.
    kind: str = ""
    #: What the plan does, in a line (which commit it reverts, which files the patch touches).
    description: str = ""
    reasons: list[str] = Field(default_factory=list)


class CodingRequest(BaseModel):
    """Ask the coding agent for a patch: the incident's service (and the label naming it), the alert
    its plan would be for, and what the investigation found (the agent's starting point)."""

    incident_id: str
    service: str
    service_label: str
    title: str = ""
    alert: TrackedAlert
    investigation: Investigation | None = None
