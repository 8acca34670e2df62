"""The remediation's pure rules: step names and timeouts, what a step reports, progress texts.

Split from `workflows/remediation.py` so the workflow module is orchestration only and these rules
are testable without a Temporal server. Pure: no workflow API, no I/O, no clock. The commands the
workflow issues are unchanged by the split (same activities, arguments and order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.plan import PlannedStep, RemediationPlan
from models.remediation import CheckReport, StepOutcome, StepRecord, VerifyOutcome

#: Added to a step's own timeout: the activity's time to set up and report around the action.
STEP_TIMEOUT_MARGIN = 60.0


def started_message(plan: RemediationPlan, approved_by: str | None) -> str:
    who = f"approved by {approved_by}" if approved_by else "autonomous"
    return f"playbook {plan.playbook} on {plan.target} ({who})"


def commit_message(plan: RemediationPlan) -> str:
    return f"selfheal: {plan.playbook} for {plan.target}\n\n{plan.description}"


def step_name(step: PlannedStep) -> str:
    """`<action> <phase> <n>`, numbered from 1 as the playbook lists them."""
    return f"{step.action.kind} {step.phase} {step.index + 1}"


def step_timeout_seconds(step: PlannedStep) -> float:
    """The action's own timeout (a command's, an HTTP call's, a kube verb's or a `kube_wait`'s) plus
    the margin; a kube verb's is per verb (a drain evicts a whole node's pods), set at rendering."""
    timeout: float = getattr(step.action, "timeout_seconds", 0)
    return timeout + STEP_TIMEOUT_MARGIN


def rollback_activity(step: PlannedStep) -> str:
    """Explicit rollback steps apply like fix steps, except a push, which deploys."""
    return "apply_step" if step.action.kind != "git_push" else "deploy_step"


def non_git_fix_ran(steps: Iterable[StepRecord]) -> bool:
    """Whether a fix step that changed something outside git (a command, an HTTP call, a kube verb)
    succeeded: such a fix needs rolling back even when nothing was deployed."""
    return any(
        r.phase == "fix" and r.status == "ok" and r.name.split(" ")[0] in ("command", "http", "kube")
        for r in steps
    )


def result_detail(result: Any) -> str:
    """What an activity's result says for the step record: detail, verify reason or check lines."""
    if isinstance(result, VerifyOutcome):
        return result.reason
    if isinstance(result, CheckReport):
        return "; ".join(result.lines)
    if isinstance(result, StepOutcome):
        return result.detail
    return ""


def result_ok(result: Any) -> bool:
    """Results without an `ok` (a commit sha, a firing state) count as success."""
    return bool(getattr(result, "ok", True))


def step_line(phase: str, name: str, status: str, seconds: float, detail: str) -> str:
    mark = "OK" if status == "ok" else "FAILED"
    return f"[{phase}] {name}: {mark} in {seconds:.1f}s" + (f" — {detail}" if detail else "")


def progress_comment(playbook: str, message: str) -> str:
    return f"Remediation ({playbook}): {message}"


#: Steps short and local enough to run as local activities (one HTTP call to Alertmanager, one
#: local commit): never a command, a push or a wait, whose length the playbook decides.
LOCAL_ACTIVITIES = frozenset({"check_firing", "commit_fix"})

#: Progress kinds held back and sent with the next report: the steps between milestones. A
#: milestone (started, deploying, verifying, rolling back, the outcome) reaches the incident and the
#: ticket at once, with the steps before it, so a heal wakes its incident four times, not a dozen.
BATCHED_KINDS = frozenset({"step", "fix_found"})


def progress_batch_comment(playbook: str, messages: list[str]) -> str:
    """One ticket comment for several progress reports, one line each, in order."""
    if len(messages) == 1:
        return progress_comment(playbook, messages[0])
    return f"Remediation ({playbook}):\n" + "\n".join(f"- {m}" for m in messages)


def progress_dedup_key(incident_id: str, workflow_id: str, run_id: str, steps: int, kind: str) -> str:
    """One comment per progress event of a run: a retried comment activity does not repeat it."""
    return f"{incident_id}:{workflow_id}:{run_id}:{steps}:{kind}"
