"""The incident's pure rules: texts, severity, identity, alert changes, timers and memo.

Split from `workflows/incident.py` so the workflow module is orchestration only and these rules
can be tested as plain functions, without a Temporal server. Everything here is pure: no workflow
API, no I/O, and the clock arrives as `now=`. The workflow's commands are built from exactly these
values, so changing a text or a rule here changes what new histories record (timeline, ticket
comments, memo) but never the sequence of commands: replays stay deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from models.coding import CodingResult
from models.evidence import Evidence
from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Outcome,
    Proposal,
    RefusedDecision,
    RemediationSummary,
    Stage,
    TrackedAlert,
    WebhookAlert,
)
from models.investigation import Investigation, ProposedFix
from models.plan import MatchResult, RemediationPlan, plan_digest

#: Highest wins when a group's alerts disagree; unknown severities rank with `none`.
SEVERITY_RANK = {"critical": 4, "error": 3, "warning": 2, "info": 1, "none": 0}
#: How long the workflow sleeps when nothing is due (it wakes on any signal anyway).
IDLE_WAKEUP = timedelta(days=1)
TITLE_MAX = 240


# --- errors -------------------------------------------------------------------------------------


def root_cause(err: BaseException) -> BaseException:
    """The innermost cause: an ActivityError wraps the ApplicationError that says what happened."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def cause(err: BaseException) -> str:
    return str(root_cause(err))[:500]


# --- alerts and identity --------------------------------------------------------------------------


def max_severity(values: Iterable[str]) -> str:
    known = [v for v in values if v]
    if not known:
        return ""
    return max(known, key=lambda s: SEVERITY_RANK.get(s.lower(), 0))


def merge_alerts(alerts: Sequence[TrackedAlert], incoming: Iterable[WebhookAlert]) -> list[TrackedAlert]:
    """A snapshot of the group applied to what we know: firing first, then by fingerprint."""
    current = {a.fingerprint: a for a in alerts}
    for alert in incoming:
        current[alert.fingerprint] = TrackedAlert.of(alert)
    return sorted(current.values(), key=lambda a: (a.status != "firing", a.fingerprint))


def alert_label(alert: TrackedAlert) -> str:
    labels = alert.labels
    extra = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
    return f"{labels.get('alertname', alert.fingerprint)}{{{extra}}}"


def describe_changes(before: Sequence[TrackedAlert], after: Sequence[TrackedAlert]) -> list[str]:
    """One line per alert that is new or changed status, in `after`'s order."""
    was = {a.fingerprint: a.status for a in before}
    changes: list[str] = []
    for alert in after:
        name = alert_label(alert)
        if alert.fingerprint not in was:
            changes.append(f"new {alert.status} alert {name}")
        elif was[alert.fingerprint] != alert.status:
            changes.append(f"{name} is now {alert.status}")
    return changes


def group_status(alerts: Iterable[TrackedAlert]) -> Literal["firing", "resolved"]:
    return "firing" if any(a.status == "firing" for a in alerts) else "resolved"


def changes_comment(changes: Sequence[str]) -> str:
    return "Alert group changed:\n" + "\n".join(f"- {c}" for c in changes)


@dataclass(frozen=True)
class Identity:
    alertname: str
    severity: str
    service: str
    title: str


def identity(
    alerts: Sequence[TrackedAlert],
    *,
    alertname: str,
    severity: str,
    service: str,
    service_labels: Sequence[str],
) -> Identity | None:
    """Name, severity, service and title from the firing alerts (all if none fires); None if no alerts.

    The current values are kept where the alerts say nothing (a missing label, no severity).
    """
    chosen = [a for a in alerts if a.status == "firing"] or list(alerts)
    if not chosen:
        return None
    first = chosen[0]
    labels = first.labels
    alertname = labels.get("alertname", alertname)
    severity = max_severity(a.labels.get("severity", "") for a in chosen) or severity
    for key in service_labels:
        if labels.get(key):
            service = labels[key]
            break
    summary = first.annotations.get("summary") or first.annotations.get("description") or ""
    title = f"[{severity or 'alert'}] {alertname}"
    if service:
        title += f" on {service}"
    if summary:
        title += f": {summary}"
    return Identity(alertname=alertname, severity=severity, service=service, title=title[:TITLE_MAX])


# --- escalation ----------------------------------------------------------------------------------


def escalation_reason(proposal: Proposal | None, remediations: Sequence[RemediationSummary]) -> str:
    """What the first escalation of a round asks humans, after any failed or skipped fix."""
    last = remediations[-1] if remediations else None
    if proposal is None:
        return "No playbook applies: a human decision is needed."
    if proposal.kind == "playbook":
        text = f"Playbook {proposal.playbook} ({proposal.mode}) proposes, on {proposal.target}:\n"
    else:
        text = f"No playbook applies. {proposal.description} The plan, on {proposal.target}:\n"
    text += "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(proposal.steps))
    if proposal.digest:
        pin = f"/selfheal approve {proposal.digest[:12]}"
        text += f"\nPlan digest: {proposal.digest} (an approval may pin it: {pin})"
    if last is not None and last.outcome in ("rolled_back", "failed"):
        text = f"The fix did not hold ({last.outcome}): {last.reason}\n" + text
    elif last is not None:
        text = f"The fix was not run ({last.outcome}): {last.reason}\n" + text
    if proposal.mode == "suggest":
        return text + "\n(suggest mode: selfheal will not run it; approving acknowledges.)"
    return text + "\nApprove to run it, reject to take over."


def reescalation_reason(decision_timeout_seconds: float) -> str:
    return f"No decision after {decision_timeout_seconds:.0f}s: re-escalated."


def escalation_dedup_key(incident_id: str, rounds: int, escalations: int) -> str:
    return f"{incident_id}:escalation:{rounds}:{escalations}"


# --- evidence, playbooks, investigation -----------------------------------------------------------


def evidence_message(evidence: Evidence) -> str:
    found = ", ".join(f"{s.source} {s.status}" for s in evidence.sections) or "no sources"
    return f"evidence gathered: {found}"


def no_playbook_message(match: MatchResult) -> str:
    reasons = "; ".join(match.reasons[:5]) or "no playbook for this alert"
    return f"no playbook applies: {reasons}"


def proposal_for(plan: RemediationPlan, *, kind: str = "playbook", description: str = "") -> Proposal:
    """The plan as humans read it on the ticket: one line per step, verification last, and the
    digest an approval may pin."""
    steps = [s.description for s in [*plan.fix, *plan.test, *plan.deploy]]
    if plan.verify is not None:
        steps.append(
            f"verify {plan.verify.query} {plan.verify.condition} for {plan.verify.hold_for_seconds:.0f}s"
            + (" and the alert resolved in Alertmanager" if plan.verify.alert_resolved else "")
        )
    return Proposal(
        playbook=plan.playbook,
        mode=plan.policy.mode,
        target=plan.target,
        params=plan.params,
        steps=steps,
        digest=plan_digest(plan),
        kind=kind,
        description=description or plan.description,
    )


def proposes_runnable(investigation: Investigation | None) -> bool:
    """Whether the investigation proposed a revert or a patch that selfheal could plan."""
    fix = investigation.proposed_fix if investigation is not None else None
    return fix is not None and fix.runnable_kind() is not None


def service_label(alert: TrackedAlert, service_labels: Sequence[str]) -> str:
    """The label naming the alert's service: the first of `service_labels` it carries."""
    return next((k for k in service_labels if alert.labels.get(k)), "service")


def proposal_planned_message(proposal: Proposal) -> str:
    return (
        f"proposed {proposal.kind} planned on {proposal.target} (plan {proposal.digest[:12]}):"
        " it runs only if an approver approves it"
    )


def proposal_refused_text(kind: str, reasons: Sequence[str]) -> str:
    """The ticket's words when a proposal cannot become a plan: it stays with humans."""
    what = f"proposed {kind}" if kind else "proposed fix"
    return (
        f"The {what} cannot be run by selfheal, so it stays with humans: "
        + "; ".join(reasons)[:1500]
        + "\nApproving acknowledges it; nothing runs."
    )


#: Who drafted a coding-agent patch, as its proposal names it (`ProposalRequest.investigator`).
CODING_AGENT = "coding agent"
#: What of the coding agent's draft a ticket comment shows (the page has all of it).
COMMENT_PATCH_CHARS = 12_000
COMMENT_OUTPUT_CHARS = 3_000


def coding_message(result: CodingResult) -> str:
    """The timeline's line for the coding agent's run."""
    files = f" ({', '.join(result.files[:5])})" if result.files else ""
    return f"coding agent: {result.status}{files}: {result.message}"[:500]


def coding_fix(result: CodingResult) -> ProposedFix:
    """The coding agent's patch as a proposed fix: planned like the investigation's, run once approved."""
    return ProposedFix(
        kind="patch",
        repo=result.repo,
        patch=result.patch,
        rationale=result.summary[:4000],
        source="coding-agent",
    )


def coding_comment(result: CodingResult) -> str:
    """The ticket's comment on the coding agent's run: what it found and did, its patch and the
    tests' output (both already redacted where they were made), and what it cost. Plain text: the
    tracker shows it as data."""
    lines = [result.message]
    if result.proposable:
        lines.append(
            "It runs only if an approver approves its plan (shown on the ticket page with its digest)."
        )
    if result.summary:
        lines += ["", "Summary (the agent's reasoning):", result.summary]
    if result.patch:
        patch = result.patch
        if len(patch) > COMMENT_PATCH_CHARS:
            patch = patch[:COMMENT_PATCH_CHARS] + "\n[… the rest is on the ticket page]"
        lines += ["", f"Patch to {result.repo} ({', '.join(result.files) or 'no files'}):", patch.rstrip()]
    if result.test_output:
        verdict = {True: "passed", False: "failed", None: "not run"}[result.tests_passed]
        output = result.test_output
        if len(output) > COMMENT_OUTPUT_CHARS:
            output = "[…]\n" + output[-COMMENT_OUTPUT_CHARS:]
        lines += ["", f"Tests on a clean checkout with the patch ({verdict}):", output.rstrip()]
    run = result.run
    if run is not None:
        cost = f"${run.cost_usd:.4f}" if run.cost_usd is not None else "cost unknown"
        stop = f", stopped by the {run.stopped_by} budget" if run.stopped_by else ""
        lines += [
            "",
            f"Model run: {run.model}, {run.outcome}{stop}; {run.requests} requests,"
            f" {run.tool_call_total} tool calls, {run.input_tokens:,} input and"
            f" {run.output_tokens:,} output tokens, {cost},"
            f" {run.wall_seconds:.1f} s.",
        ]
    return "\n".join(lines)


def digest_problem(decision: Decision, proposal: Proposal | None, plan: RemediationPlan | None) -> str:
    """Why an approval pinning `plan_digest` does not count ("" when it matches the current plan,
    or pins nothing): a changed plan needs a new approval."""
    wanted = decision.plan_digest
    if wanted is None or decision.decision != DecisionKind.APPROVE:
        return ""
    current = (proposal.digest if proposal is not None else "") or (plan_digest(plan) if plan else "")
    if not current:
        return f"plan {wanted[:12]} was approved, but this incident has no plan to run"
    if not current.startswith(wanted):
        return (
            f"plan {wanted[:12]} was approved, but the plan now is {current[:12]}: the plan changed"
            " since it was shown, so it needs a new approval"
        )
    return ""


def playbook_matched_message(plan: RemediationPlan) -> str:
    return f"playbook {plan.playbook} applies ({plan.policy.mode}) on {plan.target}"


@dataclass
class Choice:
    """What diagnose decided among an alert's candidate playbooks (tried in precedence order)."""

    #: The first candidate whose run-time params resolved and whose diagnose checks held.
    chosen: RemediationPlan | None = None
    #: The first candidate that rendered: the proposal when none is confirmed.
    first: RemediationPlan | None = None
    #: `(playbook, why)` for each candidate ruled out, in the order tried.
    ruled_out: list[tuple[str, str]] = field(default_factory=list)
    #: Why choosing stopped before confirming one (a query or check that could not run), or "".
    stopped: str = ""


def ruled_out_message(playbook: str, why: str) -> str:
    return f"playbook {playbook} ruled out: {why}"


def diagnose_failure(lines: Sequence[str]) -> str:
    """A failed diagnose as the check report says it: each check, its result and its condition."""
    return "diagnose did not confirm the pattern: " + "; ".join(lines)


def chosen_message(plan: RemediationPlan, choice: Choice) -> str:
    text = playbook_matched_message(plan)
    if choice.ruled_out:
        text += ", chosen by diagnose after ruling out " + ", ".join(p for p, _ in choice.ruled_out)
    elif plan.diagnose:
        text += ", confirmed by diagnose"
    return text


def unconfirmed_reason(choice: Choice) -> str:
    """Why no candidate runs: every candidate's reason, and what stopped the choice."""
    parts = [f"{p}: {why}" for p, why in choice.ruled_out]
    if choice.stopped:
        parts.append(choice.stopped)
    return "diagnose confirmed none of the matching playbooks: " + "; ".join(parts)


def choice_comment(choice: Choice) -> str:
    """The ticket's account of the choice: each candidate ruled out and why, then the outcome."""
    lines = ["Diagnose tried the matching playbooks in precedence order:"]
    lines += [f"- {p}: ruled out: {why}" for p, why in choice.ruled_out]
    if choice.stopped:
        lines.append(f"- stopped: {choice.stopped}")
    if choice.chosen is not None:
        chosen = choice.chosen
        lines.append(f"- {chosen.playbook}: confirmed ({chosen.policy.mode}); it is the one used.")
    elif choice.first is not None:
        lines.append(f"None was confirmed: {choice.first.playbook} is proposed, as when a diagnose fails.")
    else:
        lines.append("None was confirmed and none could be rendered: no playbook applies.")
    return "\n".join(lines)


def chosen_match(match: MatchResult, plan: RemediationPlan, choice: Choice) -> MatchResult:
    """The match as the investigator should see it: the chosen (or proposed) plan first."""
    reasons = [*match.reasons, *(f"{p}: ruled out: {why}" for p, why in choice.ruled_out)]
    return match.model_copy(
        update={
            "playbook": plan.playbook,
            "mode": plan.policy.mode,
            "params": plan.params,
            "plan": plan,
            "digest": plan.playbook_digest,
            "deferred": [],
            "reasons": reasons + ([choice.stopped] if choice.stopped else []),
        }
    )


def unmatched(match: MatchResult, choice: Choice) -> MatchResult:
    """No candidate could be rendered: the match as a miss, with every reason."""
    reasons = [f"{p}: {why}" for p, why in choice.ruled_out] + ([choice.stopped] if choice.stopped else [])
    return MatchResult(
        fingerprint=match.fingerprint, alertname=match.alertname, reasons=[*reasons, *match.reasons]
    )


def investigation_message(investigation: Investigation) -> str:
    top = investigation.hypotheses[0].title if investigation.hypotheses else "no hypothesis"
    return f"{investigation.investigator} investigation ({investigation.status}): {top}"


# --- remediation ---------------------------------------------------------------------------------


def runs_fix(decision: Decision, plan: RemediationPlan | None) -> bool:
    """An approval runs the matched plan unless it only suggests; anything else closes the incident."""
    return decision.decision == DecisionKind.APPROVE and plan is not None and plan.policy.mode != "suggest"


def approved_fix_message(decision: Decision) -> str:
    pinned = f" (plan {decision.plan_digest[:12]})" if decision.plan_digest else ""
    return f"Approved by {decision.by} via {decision.source}: running the fix{pinned}"


def blocked_comment(playbook: str, reason: str) -> str:
    return f"Playbook {playbook} was not run: {reason}"


def remediation_alert(alerts: Sequence[TrackedAlert], fingerprint: str) -> TrackedAlert:
    """The alert the plan was rendered for, or the group's first if it is gone."""
    return next((a for a in alerts if a.fingerprint == fingerprint), alerts[0])


def healed_outcome(approved_by: str | None) -> Outcome:
    return Outcome.HEALED if approved_by is None else Outcome.HEALED_AFTER_APPROVAL


def healed_comment(playbook: str, seconds: float, approved_by: str | None) -> str:
    return (
        f"Healed by playbook {playbook} in {seconds:.1f}s"
        + (f" (approved by {approved_by})" if approved_by else " with no human")
        + ": fix deployed and verified. Closing."
    )


# --- closing -------------------------------------------------------------------------------------


def refusal_text(refused: RefusedDecision) -> str:
    """The timeline's words for a decision that did not count (the ticket comment says the same)."""
    via = f" via {refused.via}" if refused.via else ""
    return f"A decision to {refused.decision.value} by {refused.by}{via} did not count: {refused.reason}."


def decision_text(decision: Decision, investigation: Investigation | None) -> str:
    """The timeline entry and ticket comment for a decision that closes the incident."""
    verb = "approved" if decision.decision == DecisionKind.APPROVE else "rejected"
    fix = investigation.proposed_fix if investigation else None
    if decision.decision != DecisionKind.APPROVE:
        meaning = "Rejected: humans own this incident from here."
    elif fix is not None and fix.kind in ("manual", "patch"):
        meaning = (
            f"Acknowledged: the proposed fix ({fix.kind}) is for humans to apply; selfheal runs nothing."
        )
    else:
        meaning = "Acknowledged: no runnable fix was proposed, so nothing runs."
    text = f"{verb.capitalize()} by {decision.by} via {decision.source}. {meaning}"
    if decision.comment:
        text += f"\nComment: {decision.comment}"
    return text


def decision_outcome(decision: Decision) -> Outcome:
    return Outcome.APPROVED if decision.decision == DecisionKind.APPROVE else Outcome.REJECTED


def resolved_comment(quiet_seconds: float) -> str:
    return f"All alerts resolved and stayed quiet for {quiet_seconds:.0f}s: closing."


def closed_message(outcome: Outcome) -> str:
    return f"incident closed: {outcome.value}"


def closing_view(view: IncidentView, outcome: Outcome, *, now: datetime) -> IncidentView:
    """The view as it will be once closed, for the ticket page and the incident store."""
    return view.model_copy(update={"outcome": outcome, "closed_at": now, "stage": Stage.CLOSED})


# --- timers --------------------------------------------------------------------------------------


def quiet_until(resolved_since: datetime, quiet_seconds: float) -> datetime:
    return resolved_since + timedelta(seconds=quiet_seconds)


def next_wakeup(
    *,
    now: datetime,
    decision_due: datetime | None,
    resolved_since: datetime | None,
    quiet_seconds: float,
) -> timedelta:
    """How long to wait for a signal before the next deadline (at least a second)."""
    candidates: list[datetime] = []
    if decision_due is not None:
        candidates.append(decision_due)
    if resolved_since is not None:
        candidates.append(quiet_until(resolved_since, quiet_seconds))
    if not candidates:
        return IDLE_WAKEUP
    return max(min(candidates) - now, timedelta(seconds=1))


# --- what Temporal shows -------------------------------------------------------------------------


def memo(view: IncidentView) -> dict[str, Any]:
    """The memo the API lists incidents from without asking a worker."""
    return {
        "incident_id": view.id,
        "title": view.title,
        "outcome": view.outcome.value if view.outcome else None,
        "opened_at": view.opened_at.isoformat(),
        "closed_at": view.closed_at.isoformat() if view.closed_at else None,
        "ticket_key": view.ticket.key if view.ticket else None,
        "ticket_url": view.ticket.url if view.ticket else None,
    }


def workflow_url(ui_url: str, namespace: str, workflow_id: str) -> str:
    """The Temporal UI's page of this workflow; "" without a UI."""
    if not ui_url:
        return ""
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


def turn_message(waited_seconds: float, max_concurrent: int) -> str:
    return f"waited {waited_seconds:.0f}s for its turn ({max_concurrent} incidents are worked on at once)"


#: The child's progress kind for a fix that now waits on a pull request (see `_give_way`).
WAITS_ON_FORGE = "pull_request"


def gave_way_message(why: str) -> str:
    return f"{why}: its place in line goes to the next incident meanwhile"
