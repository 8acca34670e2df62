"""Ids and labels: every Temporal-visible name (workflow ids and types, the task queue, search
attributes), incident ids, and the ticket label that ties a ticket to its incident.

One alert group (receiver + groupKey) owns one workflow id, so signal-with-start lands every
repeat, resend and HA duplicate in the open incident. Each incident (each run chain of that
workflow id) gets its own id, whose prefix names the group so lookups need no extra index.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from temporalio.common import SearchAttributeKey

#: The task queue every selfheal workflow and activity runs on (a Temporal-visible name).
TASK_QUEUE = "selfheal"

#: Workflow types, as Temporal knows them (the class names); started by name where the caller
#: must not import the workflow module (the sandbox would re-run it per workflow instance).
INCIDENT_WORKFLOW = "IncidentWorkflow"
REMEDIATION_WORKFLOW = "RemediationWorkflow"
CONTROL_WORKFLOW = "ControlWorkflow"
INVESTIGATION_AGENT_WORKFLOW = "InvestigationAgentWorkflow"
CODING_AGENT_WORKFLOW = "CodingAgentWorkflow"

GROUP_ID_LEN = 12
INCIDENT_ID_RE = re.compile(r"^(?P<group>[0-9a-f]{12})-(?P<suffix>[0-9a-z]{6})$")

SA_INCIDENT_ID = SearchAttributeKey.for_keyword("SelfhealIncidentId")
SA_STAGE = SearchAttributeKey.for_keyword("SelfhealStage")
SA_STATUS = SearchAttributeKey.for_keyword("SelfhealStatus")
SA_SERVICE = SearchAttributeKey.for_keyword("SelfhealService")
SA_SEVERITY = SearchAttributeKey.for_keyword("SelfhealSeverity")
SA_ALERTNAME = SearchAttributeKey.for_keyword("SelfhealAlertname")

ALL_SEARCH_ATTRIBUTES = (SA_INCIDENT_ID, SA_STAGE, SA_STATUS, SA_SERVICE, SA_SEVERITY, SA_ALERTNAME)


def group_id(receiver: str, group_key: str) -> str:
    """Stable short hash of an Alertmanager alert group."""
    digest = hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()
    return digest[:GROUP_ID_LEN]


def workflow_id_for_group(gid: str) -> str:
    return f"incident-{gid}"


def new_incident_id(gid: str) -> str:
    """A fresh incident id for the group; only used if the start actually creates a run."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return f"{gid}-" + "".join(secrets.choice(alphabet) for _ in range(6))


def incident_label(incident_id: str) -> str:
    """The ticket label that ties a ticket to its incident; every tracker searches it before any create."""
    return f"selfheal-{incident_id}"


def parse_incident_id(incident_id: str) -> str | None:
    """The group id inside an incident id, or None when it is not one of ours."""
    m = INCIDENT_ID_RE.match(incident_id)
    return m.group("group") if m else None


def remediation_workflow_id(target: str) -> str:
    """The lock: one running remediation per target (RemediationWorkflow's workflow id)."""
    return "remediation-" + re.sub(r"[^A-Za-z0-9_.-]", "_", target)[:200]


def control_workflow_id(task_queue: str) -> str:
    """One control workflow per deployment (task queue): its pause and breaker are that deployment's."""
    return f"selfheal-control-{task_queue}"
