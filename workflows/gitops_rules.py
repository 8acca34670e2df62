"""The GitOps deploy path's pure rules: what a pull request says, when a wait is over and why,
and how often to look. No workflow API, no I/O, no clock (times are passed in)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from models.gitops import PullRequestState
from models.incident import TrackedAlert
from models.plan import PlannedStep, PullRequestAction, RemediationPlan
from models.remediation import StepRecord
from playbooks.schema import format_duration

#: At most this many looks at the forge over a whole wait, so a 30-day wait keeps a bounded history.
MAX_POLLS = 1000
#: Bounded text in a pull request body (forges cap bodies at 64 KiB or so).
MAX_LINES = 40

Verdict = Literal["merged", "closed", "moved", "wait"]


def verdict(state: PullRequestState) -> Verdict:
    """Whether the wait is over. A head that moved is final whatever the status: selfheal never
    merges others' commits, nor deploys what it did not test."""
    if state.head_moved:
        return "moved"
    if state.status == "merged":
        return "merged"
    if state.status == "closed":
        return "closed"
    return "wait"


def poll_seconds(configured: float, timeout_seconds: float) -> float:
    return max(configured, timeout_seconds / MAX_POLLS, 1.0)


def why_not_merged(state: PullRequestState, what: str) -> str:
    """The escalation's reason: who closed it and what they said, or whose push moved the head."""
    v = verdict(state)
    if v == "moved":
        done = "a person merged it anyway" if state.status == "merged" else "it is left open for humans"
        return (
            f"{what} {state.url}: its head moved from {state.expected_head[:12]} to {state.head_sha[:12]}"
            f" (someone pushed to {state.branch}); selfheal does not merge or deploy commits it did not"
            f" test, and {done}"
        )
    by = f" by {state.closed_by}" if state.closed_by else ""
    said = f"; last comment: {state.closed_reason}" if state.closed_reason else ""
    return f"{what} {state.url} was closed without merging{by}{said}"


def timed_out(state: PullRequestState, what: str, timeout_seconds: float) -> str:
    return (
        f"{what} {state.url} was not merged within {format_duration(timeout_seconds)}"
        f" (still {state.status}, auto-merge {'on' if state.auto_merge else 'off'}); selfheal closed it"
    )


def timeout_comment(timeout_seconds: float) -> str:
    return (
        f"selfheal waited {format_duration(timeout_seconds)} for this to be merged and is closing it:"
        " a fix merged later would reach production without selfheal verifying it. The incident is"
        " escalated on its ticket."
    )


def moved_comment(state: PullRequestState) -> str:
    return (
        f"The head of this request moved from {state.expected_head[:12]} to {state.head_sha[:12]}."
        " selfheal will not merge it (auto-merge turned off) and stops here; it is yours now."
    )


def merged_message(state: PullRequestState, action: PullRequestAction) -> str:
    approval = " (the merge is the approval)" if action.merge_approves else ""
    by = f" by {state.merged_by}" if state.merged_by else ""
    return f"pull request #{state.number} merged{by} as {(state.merge_commit or '')[:12]}{approval}"


def pr_title(plan: RemediationPlan, incident_id: str, *, revert: bool = False) -> str:
    if revert:
        return f"Revert selfheal: {plan.playbook} for {plan.target} (incident {incident_id})"[:250]
    return f"selfheal: {plan.playbook} for {plan.target} (incident {incident_id})"[:250]


def _lines(lines: Iterable[str]) -> list[str]:
    out = [line.replace("\n", " ")[:300] for line in lines]
    return out[:MAX_LINES] + ([f"… {len(out) - MAX_LINES} more"] if len(out) > MAX_LINES else [])


def pr_body(
    plan: RemediationPlan,
    *,
    incident_id: str,
    ticket_key: str,
    alert: TrackedAlert,
    steps: list[StepRecord],
    revert_reason: str = "",
) -> str:
    """Ticket, evidence summary, the plan's verification; the activity appends the diff. The
    body is data for humans: every value is shown in code spans, never as links or markup."""
    labels = ", ".join(f"`{k}={v[:80]}`" for k, v in sorted(alert.labels.items())[:20])
    parts = [
        f"**Incident** `{incident_id}` · **ticket** `{ticket_key}` · **playbook** `{plan.playbook}`",
        "",
    ]
    if revert_reason:
        parts += ["This reverts selfheal's fix, which did not hold:", f"`{revert_reason[:500]}`", ""]
    parts += [
        "### Evidence",
        f"- alert `{plan.alertname}` firing since {alert.startsAt.isoformat()} on {labels}",
    ]
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    if summary:
        parts.append(f"- summary: `{summary[:300]}`")
    for rec in steps:
        if rec.phase in ("diagnose", "fix", "test") and rec.detail:
            parts.append(f"- {rec.phase} · {rec.name}: {rec.status} — `{rec.detail[:300]}`")
    parts += ["", "### Verification after merge"]
    if plan.verify is not None:
        v = plan.verify
        parts.append(
            f"- `{v.query}` must stay `{v.condition}` for {format_duration(v.hold_for_seconds)}"
            f" (within {format_duration(v.timeout_seconds)}); otherwise selfheal opens a revert"
        )
    else:
        parts.append("- none: the playbook has no verify section")
    later = [s.description for s in plan.deploy if s.action.kind != "pull_request"]
    parts += [f"- then: {d}" for d in _lines(later)]
    return "\n".join(parts)


def revert_step(step: PlannedStep) -> PlannedStep:
    """The rollback's own pull request: the deploy's, in the rollback phase (the merge mode kept,
    never the approval: a revert needs no approval to open)."""
    assert isinstance(step.action, PullRequestAction)
    action = step.action.model_copy(update={"merge_approves": False})
    return PlannedStep(
        phase="rollback", index=0, description=f"revert pull request ({action.merge} merge)", action=action
    )


def pull_request_step(plan: RemediationPlan) -> PlannedStep | None:
    return next((s for s in plan.deploy if s.action.kind == "pull_request"), None)
