"""Activity payloads for ticket work and the text selfheal writes on tickets.

Shared by the workflow (which builds requests) and the activities (which render and send
them). Alert labels and annotations are untrusted: they are shown as data inside a
no-format block, never interpreted as markup.
"""

from __future__ import annotations

from pydantic import BaseModel

from selfheal.evidence import Evidence
from selfheal.investigation import Investigation
from selfheal.models import IncidentView


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


def render_evidence(evidence: Evidence) -> str:
    """The evidence part of the ticket: one section per source, untrusted text kept as data."""
    lines = ["h3. Evidence"]
    for section in evidence.sections:
        head = f"*{section.source.replace('_', ' ')}*: {section.status}"
        if section.message:
            head += f" ({_safe(section.message)[:200]})"
        lines.append(head)
        if section.query:
            lines += ["{noformat}", _safe(section.query), "{noformat}"]
        for name, value in section.figures.items():
            lines.append(f"- {name}: {value:g}")
        for series in section.metrics:
            lines.append(f"- graph: {_safe(series.name)} ({len(series.points)} points; attached)")
        for change in section.changes[:5]:
            lines.append(
                f"- suspect change {change.repo}@{change.sha[:10]} by {_safe(change.author)} at"
                f" {change.committed_at.isoformat()} (score {change.score:.2f}):"
                f" {_safe(change.summary)[:120]}"
            )
        for inc in section.similar[:5]:
            fix = f", fix: {_safe(inc.fix)[:120]}" if inc.fix else ""
            lines.append(
                f"- similar incident {inc.incident_id} ({inc.outcome}{fix}): {_safe(inc.title)[:120]}"
            )
        if section.logs:
            lines.append("{noformat}")
            lines += [
                _safe(f"{line.at.isoformat()} x{line.count} {line.line}")[:500] for line in section.logs[:20]
            ]
            lines.append("{noformat}")
        for trace in section.traces[:5]:
            lines.append(
                f"- trace {trace.trace_id} {trace.duration_ms:.0f}ms {_safe(trace.root_name)} {trace.url}"
            )
    return "\n".join(lines)


def render_investigation(inv: Investigation) -> str:
    """The investigation part of the ticket; every model- or alert-derived string shown as data."""
    lines = [f"h3. Investigation ({_safe(inv.investigator)}, {inv.status})", "{noformat}", _safe(inv.summary)]
    for i, hyp in enumerate(inv.hypotheses, 1):
        refs = ", ".join(_safe(r) for r in hyp.evidence)
        cited = f" (evidence: {refs})" if refs else ""
        lines.append(f"{i}. [{hyp.confidence:.0%}] {_safe(hyp.title)}{cited}")
        if hyp.detail:
            lines.append("   " + _safe(hyp.detail)[:1000])
    lines.append(f"Matched playbook: {_safe(inv.matched_playbook or 'none (novel)')}")
    fix = inv.proposed_fix
    if fix is not None and fix.kind != "none":
        target = fix.playbook if fix.kind == "playbook" else fix.repo
        lines.append(f"Proposed fix ({fix.kind}: {_safe(target or '')}): {_safe(fix.rationale)}")
        if fix.patch:
            lines.append(_safe(fix.patch)[:5000])
    for q in inv.open_questions:
        lines.append(f"? {_safe(q)}")
    lines.append("{noformat}")
    return "\n".join(lines)


def render_page(view: IncidentView, workflow_url: str) -> str:
    """The whole ticket description: the incident's single page, rewritten in place on each update."""
    parts = [render_description(view, workflow_url)]
    if view.evidence is not None:
        parts.append(render_evidence(view.evidence))
    if view.investigation is not None:
        parts.append(render_investigation(view.investigation))
    return "\n\n".join(parts)
