"""The incident workflow's pure rules (workflows/incident_rules.py) as plain functions: no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.evidence import Evidence, EvidenceSection
from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Outcome,
    RemediationSummary,
    Stage,
    TicketRef,
    TrackedAlert,
    WebhookAlert,
)
from models.investigation import Hypothesis, Investigation, ProposedFix, RevertRef
from models.plan import (
    CommandAction,
    GitPushAction,
    MatchResult,
    PlannedPolicy,
    PlannedStep,
    PlannedVerify,
    RemediationPlan,
    plan_digest,
)
from workflows import incident_rules as rules

T0 = datetime(2026, 3, 3, 7, 15, tzinfo=UTC)


def alert(fp: str, status: str = "firing", **labels: str) -> TrackedAlert:
    return TrackedAlert(fingerprint=fp, status=status, labels=labels, annotations={}, startsAt=T0)  # type: ignore[arg-type]


def webhook_alert(fp: str, status: str = "firing", **labels: str) -> WebhookAlert:
    return WebhookAlert(fingerprint=fp, status=status, labels=labels, startsAt=T0)  # type: ignore[arg-type]


def plan(mode: str = "approve", verify: PlannedVerify | None = None) -> RemediationPlan:
    return RemediationPlan(
        playbook="db-pool-raise-size",
        playbook_digest="d",
        alert_fingerprint="fp1",
        alertname="PoolExhausted",
        target="orders",
        params={"service": "orders"},
        policy=PlannedPolicy(mode=mode, max_runs=3, window_seconds=3600, cooldown_seconds=0),  # type: ignore[arg-type]
        fix=[
            PlannedStep(phase="fix", index=0, description="raise pool.size", action=CommandAction(argv=["x"]))
        ],
        test=[PlannedStep(phase="test", index=0, description="lint", action=CommandAction(argv=["y"]))],
        deploy=[
            PlannedStep(phase="deploy", index=0, description="push", action=GitPushAction(branch="main"))
        ],
        verify=verify,
    )


def view(**kw: Any) -> IncidentView:
    base: dict[str, Any] = dict(
        id="g1-1", group_id="g1", group_key="k", receiver="r", stage=Stage.AWAITING_DECISION, status="firing"
    )
    return IncidentView(opened_at=T0, **{**base, **kw})


# --- severity and identity -------------------------------------------------------------------------


def test_max_severity_takes_the_highest_known_and_ignores_blanks() -> None:
    assert rules.max_severity(["warning", "", "Critical", "info"]) == "Critical"
    assert rules.max_severity(["", ""]) == ""
    # Unknown severities rank lowest, but still beat having none.
    assert rules.max_severity(["page"]) == "page"
    assert rules.max_severity(["page", "info"]) == "info"


def test_identity_from_the_first_firing_alert_and_the_service_label_order() -> None:
    firing = alert("b", alertname="PoolExhausted", severity="warning", job="orders-job", app="orders")
    firing.annotations = {"summary": "pool exhausted"}
    other = alert("c", alertname="PoolExhausted", severity="critical")
    resolved = alert("a", status="resolved", alertname="Old", severity="info", service="legacy")
    found = rules.identity(
        [resolved, firing, other],
        alertname="",
        severity="",
        service="",
        service_labels=["service", "job", "app"],
    )
    assert found == rules.Identity(
        alertname="PoolExhausted",
        severity="critical",
        service="orders-job",
        title="[critical] PoolExhausted on orders-job: pool exhausted",
    )


def test_identity_keeps_what_the_alerts_do_not_say() -> None:
    found = rules.identity(
        [alert("a", status="resolved")],
        alertname="Was",
        severity="error",
        service="svc",
        service_labels=["x"],
    )
    assert found == rules.Identity(
        alertname="Was", severity="error", service="svc", title="[error] Was on svc"
    )
    assert rules.identity([], alertname="", severity="", service="", service_labels=[]) is None


def test_identity_title_is_bounded() -> None:
    long = alert("a", alertname="A" * 300)
    found = rules.identity([long], alertname="", severity="", service="", service_labels=[])
    assert found is not None and found.title == ("[alert] " + "A" * 300)[: rules.TITLE_MAX]


# --- alert changes ---------------------------------------------------------------------------------


def test_merge_orders_firing_first_then_fingerprint_and_replaces_by_fingerprint() -> None:
    before = [alert("b", alertname="X"), alert("a", status="resolved", alertname="X")]
    merged = rules.merge_alerts(before, [webhook_alert("b", "resolved", alertname="X"), webhook_alert("c")])
    assert [(a.fingerprint, a.status) for a in merged] == [
        ("c", "firing"),
        ("a", "resolved"),
        ("b", "resolved"),
    ]


def test_describe_changes_new_and_changed_alerts_only() -> None:
    before = [alert("a", alertname="X", severity="warning", pod="p1"), alert("b", alertname="X", pod="p2")]
    after = [
        alert("c", alertname="Y", pod="p3"),
        alert("a", status="resolved", alertname="X", severity="warning", pod="p1"),
        alert("b", alertname="X", pod="p2"),
    ]
    changes = rules.describe_changes(before, after)
    assert changes == ["new firing alert Y{pod=p3}", "X{pod=p1} is now resolved"]
    assert rules.changes_comment(changes) == (
        "Alert group changed:\n- new firing alert Y{pod=p3}\n- X{pod=p1} is now resolved"
    )


def test_alert_label_falls_back_to_the_fingerprint() -> None:
    assert rules.alert_label(alert("fp9", zone="b", app="a")) == "fp9{app=a, zone=b}"


def test_group_status() -> None:
    assert rules.group_status([alert("a", "resolved"), alert("b")]) == "firing"
    assert rules.group_status([alert("a", "resolved")]) == "resolved"
    assert rules.group_status([]) == "resolved"


# --- escalation texts ------------------------------------------------------------------------------


def test_escalation_reason_without_a_playbook() -> None:
    assert rules.escalation_reason(None, []) == "No playbook applies: a human decision is needed."


def test_escalation_reason_lists_the_proposal_and_what_happened_to_the_last_fix() -> None:
    proposal = rules.proposal_for(plan())
    text = rules.escalation_reason(proposal, [])
    assert proposal.digest == plan_digest(plan()) and len(proposal.digest) == 64
    assert text == (
        "Playbook db-pool-raise-size (approve) proposes, on orders:\n"
        "  1. raise pool.size\n  2. lint\n  3. push\n"
        f"Plan digest: {proposal.digest} (an approval may pin it: /selfheal approve {proposal.digest[:12]})\n"
        "Approve to run it, reject to take over."
    )
    failed = RemediationSummary(playbook="p", outcome="rolled_back", reason="verify failed")
    assert rules.escalation_reason(proposal, [failed]).startswith(
        "The fix did not hold (rolled_back): verify failed\nPlaybook"
    )
    blocked = RemediationSummary(playbook="p", outcome="blocked", reason="rate limit")
    assert rules.escalation_reason(proposal, [failed, blocked]).startswith(
        "The fix was not run (blocked): rate limit\n"
    )
    suggest = rules.proposal_for(plan(mode="suggest"))
    assert rules.escalation_reason(suggest, []).endswith(
        "\n(suggest mode: selfheal will not run it; approving acknowledges.)"
    )


def test_reescalation_and_dedup_texts() -> None:
    assert rules.reescalation_reason(1800.4) == "No decision after 1800s: re-escalated."
    assert rules.escalation_dedup_key("g1-1", 2, 3) == "g1-1:escalation:2:3"


def test_proposal_adds_the_verification_step() -> None:
    verify = PlannedVerify(query="up", condition="> 0", hold_for_seconds=30.4)
    proposal = rules.proposal_for(plan(verify=verify))
    assert proposal.steps[-1] == "verify up > 0 for 30s"
    assert (proposal.playbook, proposal.mode, proposal.target, proposal.params) == (
        "db-pool-raise-size",
        "approve",
        "orders",
        {"service": "orders"},
    )
    assert rules.playbook_matched_message(plan()) == "playbook db-pool-raise-size applies (approve) on orders"


def test_no_playbook_message_keeps_five_reasons() -> None:
    match = MatchResult(fingerprint="f", alertname="A", reasons=[f"r{i}" for i in range(7)])
    assert rules.no_playbook_message(match) == "no playbook applies: r0; r1; r2; r3; r4"
    assert rules.no_playbook_message(MatchResult(fingerprint="f", alertname="A")) == (
        "no playbook applies: no playbook for this alert"
    )


def test_evidence_and_investigation_messages() -> None:
    evidence = Evidence(
        incident_id="i",
        gathered_at=T0,
        sections=[
            EvidenceSection(source="logs", status="ok"),
            EvidenceSection(source="traces", status="failed"),
        ],
    )
    assert rules.evidence_message(evidence) == "evidence gathered: logs ok, traces failed"
    assert (
        rules.evidence_message(Evidence(incident_id="i", gathered_at=T0)) == "evidence gathered: no sources"
    )
    inv = Investigation(
        investigator="builtin", summary="s", hypotheses=[Hypothesis(title="pool too small", confidence=0.7)]
    )
    assert rules.investigation_message(inv) == "builtin investigation (ok): pool too small"
    assert rules.investigation_message(Investigation(investigator="llm:m", status="failed", summary="")) == (
        "llm:m investigation (failed): no hypothesis"
    )


# --- decisions and closing -------------------------------------------------------------------------


def decision(kind: DecisionKind, comment: str = "") -> Decision:
    return Decision(decision=kind, by="alice", source="jira", comment=comment)


def test_runs_fix_only_on_an_approved_runnable_plan() -> None:
    approve, reject = decision(DecisionKind.APPROVE), decision(DecisionKind.REJECT)
    assert rules.runs_fix(approve, plan())
    assert not rules.runs_fix(approve, plan(mode="suggest"))
    assert not rules.runs_fix(approve, None)
    assert not rules.runs_fix(reject, plan())
    assert rules.approved_fix_message(approve) == "Approved by alice via jira: running the fix"


REJECTED = "Rejected by alice via jira. Rejected: humans own this incident from here."
NOTHING_RUNS = "Approved by alice via jira. Acknowledged: no runnable fix was proposed, so nothing runs."
FOR_HUMANS = (
    "Approved by alice via jira. Acknowledged: the proposed fix (patch) is for humans to apply;"
    " selfheal runs nothing."
)


@pytest.mark.parametrize(
    ("kind", "fix", "expected", "outcome"),
    [
        (DecisionKind.REJECT, None, REJECTED, Outcome.REJECTED),
        (DecisionKind.APPROVE, None, NOTHING_RUNS, Outcome.APPROVED),
        (DecisionKind.APPROVE, "patch", FOR_HUMANS, Outcome.APPROVED),
        (DecisionKind.APPROVE, "playbook", NOTHING_RUNS, Outcome.APPROVED),
    ],
)
def test_decision_text(kind: DecisionKind, fix: str | None, expected: str, outcome: Outcome) -> None:
    inv = None
    if fix is not None:
        inv = Investigation(investigator="builtin", summary="s", proposed_fix=ProposedFix(kind=fix))  # type: ignore[arg-type]
    assert rules.decision_text(decision(kind), inv) == expected
    assert rules.decision_text(decision(kind, comment="on it"), inv) == expected + "\nComment: on it"
    assert rules.decision_outcome(decision(kind)) == outcome


def test_healed_texts_and_outcome() -> None:
    assert rules.healed_comment("p", 12.345, None) == (
        "Healed by playbook p in 12.3s with no human: fix deployed and verified. Closing."
    )
    assert rules.healed_comment("p", 1, "bob") == (
        "Healed by playbook p in 1.0s (approved by bob): fix deployed and verified. Closing."
    )
    assert rules.healed_outcome(None) == Outcome.HEALED
    assert rules.healed_outcome("bob") == Outcome.HEALED_AFTER_APPROVAL


def test_closing_texts_and_view() -> None:
    assert rules.resolved_comment(300) == "All alerts resolved and stayed quiet for 300s: closing."
    assert rules.closed_message(Outcome.RESOLVED) == "incident closed: resolved"
    assert rules.blocked_comment("p", "cooldown") == "Playbook p was not run: cooldown"
    v = view()
    closing = rules.closing_view(v, Outcome.REJECTED, now=T0 + timedelta(hours=1))
    assert (closing.outcome, closing.closed_at, closing.stage) == (
        Outcome.REJECTED,
        T0 + timedelta(hours=1),
        Stage.CLOSED,
    )
    assert v.stage == Stage.AWAITING_DECISION and v.closed_at is None, "the view itself is not changed"


def test_remediation_alert_prefers_the_planned_fingerprint() -> None:
    alerts = [alert("a"), alert("b")]
    assert rules.remediation_alert(alerts, "b").fingerprint == "b"
    assert rules.remediation_alert(alerts, "gone").fingerprint == "a"


# --- timers ----------------------------------------------------------------------------------------


def test_next_wakeup_is_the_nearest_deadline_at_least_a_second_away() -> None:
    due = T0 + timedelta(seconds=600)
    assert rules.next_wakeup(now=T0, decision_due=None, resolved_since=None, quiet_seconds=300) == (
        rules.IDLE_WAKEUP
    )
    assert rules.next_wakeup(now=T0, decision_due=due, resolved_since=None, quiet_seconds=300) == timedelta(
        seconds=600
    )
    assert rules.next_wakeup(now=T0, decision_due=due, resolved_since=T0, quiet_seconds=300) == timedelta(
        seconds=300
    )
    assert rules.next_wakeup(
        now=due + timedelta(seconds=5), decision_due=due, resolved_since=None, quiet_seconds=0
    ) == timedelta(seconds=1)
    assert rules.quiet_until(T0, 300) == T0 + timedelta(seconds=300)


# --- memo, links, errors ---------------------------------------------------------------------------


def test_memo() -> None:
    v = view(title="t", ticket=TicketRef(key="OPS-1", url="http://t/OPS-1", tracker="local"))
    assert rules.memo(v) == {
        "incident_id": "g1-1",
        "title": "t",
        "outcome": None,
        "opened_at": T0.isoformat(),
        "closed_at": None,
        "ticket_key": "OPS-1",
        "ticket_url": "http://t/OPS-1",
    }
    closed = rules.closing_view(v, Outcome.RESOLVED, now=T0)
    assert rules.memo(closed)["outcome"] == "resolved" and rules.memo(closed)["closed_at"] == T0.isoformat()


def test_workflow_url() -> None:
    assert rules.workflow_url("", "default", "incident-g1") == ""
    assert rules.workflow_url("http://ui:8233/", "prod", "incident-g1") == (
        "http://ui:8233/namespaces/prod/workflows/incident-g1"
    )


def test_cause_is_the_innermost_error_bounded() -> None:
    try:
        try:
            raise ValueError("x" * 600)
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as err:
        assert rules.root_cause(err).__class__ is ValueError
        assert rules.cause(err) == "x" * 500


# --- approved proposals: the digest an approval pins ----------------------------------------------


def test_an_approval_pinning_the_current_plan_counts_and_a_stale_one_does_not() -> None:
    current = plan()
    proposal = rules.proposal_for(current, kind="revert", description="Revert config@abc")
    approve = Decision(decision=DecisionKind.APPROVE, by="alice")
    assert rules.digest_problem(approve, proposal, current) == ""  # nothing pinned
    pinned = approve.model_copy(update={"plan_digest": proposal.digest[:12]})
    assert rules.digest_problem(pinned, proposal, current) == ""
    changed = plan(mode="auto")
    stale = rules.digest_problem(pinned, rules.proposal_for(changed), changed)
    assert f"plan {proposal.digest[:12]} was approved" in stale and "needs a new approval" in stale
    assert "no plan to run" in rules.digest_problem(pinned, None, None)
    # A proposal recorded before digests were shown: the plan's own digest counts.
    assert rules.digest_problem(pinned, proposal.model_copy(update={"digest": ""}), current) == ""
    reject = pinned.model_copy(update={"decision": DecisionKind.REJECT})
    assert rules.digest_problem(reject, None, None) == ""  # a rejection never needs a plan


def test_a_proposal_plan_reads_as_the_investigation_proposal() -> None:
    proposal = rules.proposal_for(plan(), kind="revert", description="Revert config@abc (bad).")
    text = rules.escalation_reason(proposal, [])
    assert text.startswith("No playbook applies. Revert config@abc (bad). The plan, on orders:\n")
    assert f"/selfheal approve {proposal.digest[:12]}" in text
    assert rules.proposal_planned_message(proposal).startswith("proposed revert planned on orders (plan ")
    refused = rules.proposal_refused_text("revert", ["repository 'app' is not configured"])
    assert "cannot be run by selfheal" in refused and "'app' is not configured" in refused


def test_which_proposals_selfheal_can_plan() -> None:
    def inv(fix: ProposedFix | None) -> Investigation:
        return Investigation(investigator="builtin", summary="s", proposed_fix=fix)

    revert = RevertRef(repo="config", sha="a" * 40)
    assert rules.proposes_runnable(inv(ProposedFix(kind="manual", revert=revert)))
    assert rules.proposes_runnable(inv(ProposedFix(kind="patch", repo="config", patch="diff")))
    assert not rules.proposes_runnable(inv(ProposedFix(kind="manual", rationale="restart it")))
    assert not rules.proposes_runnable(inv(ProposedFix(kind="patch", patch="diff")))  # no repo
    assert not rules.proposes_runnable(inv(ProposedFix(kind="playbook", playbook="p", revert=revert)))
    assert not rules.proposes_runnable(inv(None)) and not rules.proposes_runnable(None)
