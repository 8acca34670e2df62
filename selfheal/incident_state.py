"""What an incident workflow starts with and carries across continue-as-new.

Outside `workflows/` so the workflow sandbox passes these pydantic classes through instead of
re-creating them for every workflow instance it builds (measured: most of the worker's CPU
in a burst of new incidents went to re-running workflow modules).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from playbooks.plan import RemediationPlan
from selfheal.models import IncidentView, Notification


class IncidentPolicySnapshot(BaseModel):
    """The policy the incident was started with; fixed per run so replays stay deterministic."""

    decision_timeout_seconds: float = 1800
    max_reescalations: int = 3
    resolve_quiet_seconds: float = 300
    service_labels: list[str] = Field(default_factory=lambda: ["service", "job", "app", "namespace"])
    activity_timeout_seconds: float = 30
    ticket_retry_seconds: float = 60
    continue_as_new_after_events: int = 2000
    ui_url: str = ""
    namespace: str = "default"
    lock_retry_seconds: float = 15
    #: `builtin` always runs; `llm` then runs the agent with the builtin result as its start.
    investigator: str = "builtin"


class IncidentInput(BaseModel):
    incident_id: str
    group_id: str
    policy: IncidentPolicySnapshot = Field(default_factory=IncidentPolicySnapshot)
    #: Carried across continue-as-new; None on the first run.
    state: IncidentState | None = None
    pending: list[Notification] = Field(default_factory=list)


class IncidentState(BaseModel):
    """Everything the workflow must remember besides what the view shows."""

    view: IncidentView
    decision_due: datetime | None = None
    resolved_since: datetime | None = None
    reescalation_limit_noted: bool = False
    #: The plan of the matched playbook, kept so an approval can run it later.
    plan: RemediationPlan | None = None
    #: Escalation rounds (a failed fix starts a new one); keeps comment dedup keys distinct.
    rounds: int = 0


IncidentInput.model_rebuild()
