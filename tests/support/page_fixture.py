"""A realistic incident view for the ticket page tests: evidence of every kind, an investigation,
a proposal, remediations and a long timeline. `hostile` puts markup-injection strings everywhere
an alert, a log, a commit or a model can put text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.evidence import (
    ChangeRef,
    Evidence,
    EvidenceSection,
    LogLine,
    MetricSeries,
    SimilarIncident,
    TraceRef,
)
from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Proposal,
    RemediationSummary,
    Stage,
    TicketRef,
    TimelineEvent,
    TrackedAlert,
)
from models.investigation import DiagnoseResult, Hypothesis, Investigation, ProposedFix

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORKFLOW_URL = "http://temporal.example/namespaces/default/workflows/inc-7"

#: Strings that would be markup in one of the formats if they were not escaped.
HOSTILE = [
    "{noformat}closed early{noformat}",
    "[click here|http://evil.example/phish]",
    "*bold claim*",
    "{{code}}",
    "!evil.png!",
    "|cell|injected|",
    "{color:red}RED{color}",
    "h1. Fake heading",
    "<script>alert(1)</script>",
    "[md link](http://evil.example/md)",
    "![img](http://evil.example/x.png)",
    "# md heading",
    "```\nfenced\n```",
    "\\\\ line break",
]


def view(*, hostile: bool = False, timeline: int = 80, log_lines: int = 20) -> IncidentView:
    bad = " ".join(HOSTILE) if hostile else ""

    def t(text: str) -> str:
        return f"{text} {bad}".strip() if hostile else text

    alerts = [
        TrackedAlert(
            fingerprint="fp1",
            status="firing",
            labels={"alertname": "HighErrorRate", "service": "checkout", "severity": "critical", "x": t("v")},
            annotations={
                "summary": t("Error ratio above 5% password=hunter2"),
                "runbook_url": "https://runbooks.example/HighErrorRate",
            },
            startsAt=START,
            generatorURL="http://prometheus.example/graph?g0.expr=rate%28errors%5B5m%5D%29",
        )
    ]
    evidence = Evidence(
        incident_id="inc-7",
        gathered_at=START + timedelta(minutes=1),
        sections=[
            EvidenceSection(
                source="metrics",
                status="ok",
                query="rate(errors[5m])",
                metrics=[
                    MetricSeries(
                        name=t("error ratio"),
                        query="rate(errors[5m])",
                        points=[(1.0, 0.1), (2.0, 0.2)],
                        graph="inc-7-graph-1.png",
                    )
                ],
            ),
            EvidenceSection(
                source="affected_users",
                status="ok",
                query='sum(active_users{service="checkout"})',
                figures={"affected users": 42.0},
            ),
            EvidenceSection(
                source="logs",
                status="ok",
                query='{service="checkout"}',
                logs=[
                    LogLine(
                        at=START - timedelta(seconds=i), line=t(f"ERROR pool exhausted after {i}ms"), count=3
                    )
                    for i in range(log_lines)
                ],
            ),
            EvidenceSection(
                source="traces",
                status="ok",
                traces=[
                    TraceRef(
                        trace_id="abc123def456",
                        root_service="checkout",
                        root_name=t("POST /pay"),
                        duration_ms=1234,
                        url="https://grafana.example/explore?trace=abc123def456",
                    )
                ],
            ),
            EvidenceSection(
                source="changes",
                status="ok",
                changes=[
                    ChangeRef(
                        repo="config",
                        sha="0123456789abcdef0123",
                        author=t("Dev Eloper"),
                        committed_at=START - timedelta(minutes=12, seconds=3),
                        summary=t("lower the pool size"),
                        paths=["services/checkout/pool.yaml"],
                        insertions=3,
                        deletions=1,
                        score=1.8,
                        touches_service=True,
                        url="https://git.example/config/commit/0123456789abcdef0123",
                        diff=t(
                            "diff --git a/services/checkout/pool.yaml b/services/checkout/pool.yaml\n"
                            "@@ -1,2 +1,2 @@\n-  size: 50\n+  size: 5\n+  password: hunter2\n"
                        ),
                    )
                ],
            ),
            EvidenceSection(
                source="similar_incidents",
                status="ok",
                similar=[
                    SimilarIncident(
                        incident_id="inc-3",
                        title=t("HighErrorRate checkout"),
                        outcome="healed",
                        fix=t("raise the pool size to 50"),
                        score=0.91,
                        url="http://selfheal.example/api/v1/incidents/inc-3",
                    )
                ],
            ),
        ],
    )
    investigation = Investigation(
        investigator="llm",
        summary=t("The pool was lowered 12 minutes before the alert.\n\nNovel: no playbook matched."),
        hypotheses=[
            Hypothesis(
                title="Pool size lowered" + (f" {HOSTILE[0]} {HOSTILE[1]}" if hostile else ""),
                detail=t("commit lowers pool"),
                confidence=0.8,
                evidence=["changes:config@0123456789", "logs:0"],
            ),
            Hypothesis(title="Traffic spike", confidence=0.1, evidence=["metrics:error ratio"]),
        ],
        matched_playbook=None,
        proposed_fix=ProposedFix(
            kind="patch",
            repo="config",
            patch=t("--- a/pool.yaml\n+++ b/pool.yaml\n-size: 5\n+size: 50"),
            rationale=t("restore the pool size"),
        ),
        open_questions=[t("Was the change deployed everywhere?")],
        diagnose=[
            DiagnoseResult(
                playbook="pool", name="saturated", query="q", condition="> 0.9", value=0.95, passed=True
            )
        ],
        duration_seconds=3.2,
    )
    events = [
        TimelineEvent(at=START + timedelta(seconds=i), kind="note", message=t(f"event number {i}"))
        for i in range(timeline)
    ]
    return IncidentView(
        id="inc-7",
        group_id="g1",
        group_key=t('{}:{alertname="HighErrorRate"}'),
        receiver="selfheal",
        stage=Stage.AWAITING_DECISION,
        status="firing",
        service="checkout",
        severity="critical",
        alertname="HighErrorRate",
        title=t("HighErrorRate on checkout"),
        opened_at=START,
        ticket=TicketRef(key="OPS-1", url="http://jira.example/browse/OPS-1", tracker="jira"),
        alerts=alerts,
        proposal=Proposal(
            playbook="raise-pool",
            mode="approve",
            target="checkout",
            params={"size": "50"},
            steps=[t("edit services/checkout/pool.yaml"), "run tests", "deploy"],
        ),
        evidence=evidence,
        investigation=investigation,
        remediations=[
            RemediationSummary(
                playbook="raise-pool", outcome="rolled_back", reason=t("verify failed"), seconds=61.5
            ),
            RemediationSummary(
                playbook="raise-pool",
                outcome="healed",
                fix_commit="fedcba9876543210",
                approved_by="oncall",
                seconds=42,
            ),
        ],
        timeline=events,
    )


def decided(v: IncidentView) -> IncidentView:
    return v.model_copy(update={"decision": Decision(decision=DecisionKind.APPROVE, by="oncall")})
