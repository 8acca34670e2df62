"""Activity payloads for ticket work and the text selfheal writes on tickets.

Shared by the workflow (which builds requests) and the activities (which render and send
them). Alert labels and annotations are untrusted: they are shown as data inside a
no-format block, never interpreted as markup.
"""

from __future__ import annotations

from pydantic import BaseModel

from selfheal.models import IncidentView


class OpenTicketRequest(BaseModel):
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


def _safe(value: str) -> str:
    """Neutralise a value so it cannot close the no-format block it is shown in."""
    return value.replace("{noformat}", "{ noformat }").replace("\r", "")


def render_description(view: IncidentView, workflow_url: str) -> str:
    """The ticket body: what fired, where, and how to decide."""
    lines = [
        f"selfheal incident {view.id} for alert group {_safe(view.group_key)!r}"
        f" (receiver {_safe(view.receiver)}).",
        "",
        f"Service: {_safe(view.service) or 'unknown'}   Severity: {_safe(view.severity) or 'unknown'}",
        "",
        "Alerts:",
        "{noformat}",
    ]
    for alert in view.alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        lines.append(_safe(f"[{alert.status}] since {alert.startsAt.isoformat()} {{{labels}}}"))
        for key in ("summary", "description", "runbook_url"):
            if alert.annotations.get(key):
                lines.append(_safe(f"    {key}: {alert.annotations[key]}"))
        if alert.generatorURL:
            lines.append(_safe(f"    source: {alert.generatorURL}"))
    lines.append("{noformat}")
    lines += [
        "",
        "To decide, comment {{/selfheal approve}} or {{/selfheal reject}} (optionally followed by a reason),",
        "or use `selfheal approve|reject " + view.id + " --as USER`.",
    ]
    if workflow_url:
        lines.append(f"Workflow: {workflow_url}")
    return "\n".join(lines)
