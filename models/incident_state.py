"""What an incident workflow starts with and carries across continue-as-new.

Outside `workflows/` so the workflow sandbox passes these pydantic classes through instead of
re-creating them for every workflow instance it builds (measured: most of the worker's CPU
in a burst of new incidents went to re-running workflow modules).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.incident import IncidentView, Notification
from models.plan import RemediationPlan
from models.settings import Section


class IncidentPolicy(Section):
    """The `incident:` settings section; the workflow gets it whole inside its policy snapshot."""

    decision_timeout_seconds: float = Field(default=1800, gt=0)
    max_reescalations: int = Field(default=3, ge=0)
    resolve_quiet_seconds: float = Field(default=300, ge=0)
    #: Label holding the affected service (first one present wins).
    service_labels: list[str] = Field(default_factory=lambda: ["service", "job", "app", "namespace"])
    activity_timeout_seconds: float = Field(default=30, gt=0)
    continue_as_new_after_events: int = Field(default=2000, ge=100)
    #: Incidents worked on at once per deployment (task queue): evidence, matching, investigation
    #: and the fix; more wait their turn after their ticket is open, the one that opened first
    #: going first, so in a storm the first incidents heal first. Approved fixes wait the same
    #: way. 0: no bound (every incident advances at once).
    max_concurrent: int = Field(default=10, ge=0)


class IncidentPolicySnapshot(IncidentPolicy):
    """The policy the incident was started with; fixed per run so replays stay deterministic.

    Built by `selfheal.incidents.policy_snapshot` from the settings model itself: the `incident:`
    section whole (inherited, so no default is repeated here), plus the few values the workflow
    needs from other sections. The field names are the wire shape of recorded histories.
    """

    ticket_retry_seconds: float = 60
    #: temporal.ui_url and temporal.namespace, for the ticket's link to the workflow.
    ui_url: str = ""
    namespace: str = "default"
    #: remediation.lock_retry_seconds: how often to retry when another remediation holds the target.
    lock_retry_seconds: float = 15
    #: investigation.investigator: `builtin` always runs; `llm` then runs the agent with the builtin
    #: result as its start.
    investigator: str = "builtin"
    #: investigation.coding_agent.enabled: when no revert applies, the coding agent drafts a patch.
    coding_agent: bool = False


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
