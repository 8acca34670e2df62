"""The remediation workflow's pure rules (workflows/remediation_rules.py) as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime

from models.plan import (
    CommandAction,
    GitPushAction,
    HttpAction,
    KubeAction,
    KubeWaitAction,
    PlannedPolicy,
    PlannedStep,
    RemediationPlan,
)
from models.remediation import CheckReport, StepOutcome, StepRecord, VerifyOutcome
from workflows import remediation_rules as rules

T0 = datetime(2026, 3, 3, 7, 15, tzinfo=UTC)

PLAN = RemediationPlan(
    playbook="db-pool-raise-size",
    playbook_digest="d",
    description="Raise the pool size",
    alert_fingerprint="fp1",
    alertname="PoolExhausted",
    target="orders",
    policy=PlannedPolicy(mode="auto", max_runs=3, window_seconds=3600, cooldown_seconds=0),
)


def record(phase: str, name: str, status: str) -> StepRecord:
    return StepRecord(phase=phase, name=name, status=status, started=T0, seconds=1.0)


def test_texts() -> None:
    assert rules.started_message(PLAN, None) == "playbook db-pool-raise-size on orders (autonomous)"
    assert rules.started_message(PLAN, "bob") == "playbook db-pool-raise-size on orders (approved by bob)"
    assert rules.commit_message(PLAN) == "selfheal: db-pool-raise-size for orders\n\nRaise the pool size"
    assert rules.progress_comment("p", "deploying") == "Remediation (p): deploying"
    assert rules.progress_dedup_key("i", "remediation-orders", "run", 3, "step") == (
        "i:remediation-orders:run:3:step"
    )


def test_step_name_timeout_and_rollback_activity() -> None:
    cmd = PlannedStep(
        phase="test", index=1, description="t", action=CommandAction(argv=["x"], timeout_seconds=90)
    )
    push = PlannedStep(phase="rollback", index=0, description="p", action=GitPushAction(branch="main"))
    assert rules.step_name(cmd) == "command test 2"
    assert rules.step_timeout_seconds(cmd) == 150
    assert rules.step_timeout_seconds(push) == rules.STEP_TIMEOUT_MARGIN, "no timeout of its own"
    assert rules.rollback_activity(push) == "deploy_step"
    http = PlannedStep(phase="rollback", index=1, description="h", action=HttpAction(url="http://x"))
    assert rules.rollback_activity(http) == "apply_step"


def test_non_git_fix_ran() -> None:
    assert not rules.non_git_fix_ran([record("fix", "git_edit fix 1", "ok")])
    assert not rules.non_git_fix_ran([record("fix", "command fix 1", "failed")])
    assert not rules.non_git_fix_ran([record("test", "command test 1", "ok")])
    assert rules.non_git_fix_ran([record("fix", "http fix 1", "ok")])
    assert rules.non_git_fix_ran([record("fix", "command fix 1", "ok")])


def test_result_detail_and_ok() -> None:
    assert rules.result_detail(StepOutcome(ok=True, detail="d")) == "d"
    assert rules.result_detail(VerifyOutcome(ok=False, reason="still firing")) == "still firing"
    assert rules.result_detail(CheckReport(ok=True, lines=["a", "b"])) == "a; b"
    assert rules.result_detail("abc123") == ""
    assert rules.result_ok("abc123") and rules.result_ok(StepOutcome(ok=True))
    assert not rules.result_ok(VerifyOutcome(ok=False))


def test_step_line() -> None:
    assert rules.step_line("fix", "command fix 1", "ok", 1.26, "") == "[fix] command fix 1: OK in 1.3s"
    assert rules.step_line("verify", "verify", "failed", 3, "up < 1") == (
        "[verify] verify: FAILED in 3.0s — up < 1"
    )


def test_kube_steps_need_rolling_back_and_keep_their_own_timeouts() -> None:
    assert rules.non_git_fix_ran([record("fix", "kube fix 1", "ok")]), "a kube fix changed the cluster"
    assert not rules.non_git_fix_ran([record("test", "kube test 1", "ok")]), "a dry run changed nothing"
    drain = PlannedStep(
        phase="fix", index=0, description="", action=KubeAction(verb="drain", node="n1", timeout_seconds=600)
    )
    wait = PlannedStep(
        phase="deploy",
        index=0,
        description="",
        action=KubeWaitAction(workload="Deployment", namespace="shop", name="cart", timeout_seconds=300),
    )
    assert rules.step_timeout_seconds(drain) == 600 + rules.STEP_TIMEOUT_MARGIN
    assert rules.step_timeout_seconds(wait) == 300 + rules.STEP_TIMEOUT_MARGIN


def test_a_batch_of_progress_is_one_comment_with_every_step_in_order() -> None:
    steps = ["[fix] commit fix: OK in 0.1s", "[test] command test 1: OK in 0.2s", "deploying the fix to web"]
    body = rules.progress_batch_comment("pool-raise", steps)
    assert body.splitlines() == ["Remediation (pool-raise):", *(f"- {s}" for s in steps)]
    # A lone report reads as it did before batching.
    assert rules.progress_batch_comment("pool-raise", steps[:1]) == rules.progress_comment(
        "pool-raise", steps[0]
    )
    # Steps wait for the next milestone; milestones and outcomes go out at once.
    assert {"step", "fix_found"} == rules.BATCHED_KINDS
    assert not {"remediation_started", "deploying", "verifying", "rolling_back"} & rules.BATCHED_KINDS
