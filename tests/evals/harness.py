"""Investigator evals: one folder per case, scored fact by fact.

Two sets, scored and reported separately (see `tests/evals/README.md`):
- `tests/evals/cases/<name>/`: the development set. Investigators are tuned on these.
- `tests/evals/heldout/<name>/`: the held-out set. Only ever scored; nobody tunes on it, so its
  score says how the investigators do on incidents they were not shaped around.

A case holds the Alertmanager notification (`alert.json`), the recorded outputs of every
evidence source and diagnose check (`evidence.yaml`, times in minutes relative to the alert's
`startsAt`), and what a good investigation must say (`expected.yaml`).

`evidence.yaml`: `metrics[]` (`name`, `baseline`, `level`, `onset_minutes`), `logs[]` (`line`,
`count`, `first_minutes`, `last_minutes`, optional `service`), `traces[]` (TraceRef fields, optional
`spans[]` of `{service, name, parent_service, status, error}`), `changes[]` (`sha`, `summary`,
`paths`, `minutes_before`, `author`, `repo`, `selfheal_incident`, optional `diff`: the change's
unified diff as `git show` prints it, optional `service`: the service it belongs to, else read off
its paths), `service_paths` (globs, `{service}` replaced), top-level `depends_on`
(`{checkout: [payments, postgres]}`, as `evidence.services.<name>.depends_on` in settings),
`similar[]`, `affected_users`, `diagnose` (check name → value) and `failed` (source names).

`expected.yaml`:
- `kind`: one of KINDS (bad-deploy, config, dependency, capacity, certificate, migration,
  external, no-change), for the per-kind report;
- `playbook`: the playbook that must be matched, or `novel`;
- `top`: strings the top-ranked hypothesis must contain (the cause, e.g. a commit sha);
- `facts`: strings that must appear somewhere (summary, hypotheses, fix, open questions);
- `not_top`: decoys — loud but unrelated signals — that must not be the top hypothesis;
- `summary_lacks`: strings the summary must not blame;
- `fix`: the kind of proposed fix (`playbook`, `manual`, `patch`, `none`).

Matching uses the real playbook library and the real diagnose conditions, so the evals test
the whole builtin path, not a copy of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from connectors.prometheus import PrometheusClient
from investigation.changes import change_score, owning_service, path_matches_any
from models.evidence import (
    ChangeRef,
    Evidence,
    EvidenceSection,
    LogLine,
    MetricSeries,
    SimilarIncident,
    TraceRef,
)
from models.incident import AlertmanagerWebhook, IncidentView, Stage, TrackedAlert
from models.investigation import DiagnoseResult, Investigation
from models.plan import MatchResult
from playbooks.loader import load_playbooks
from workflows.incident_rules import Choice, chosen_match, unmatched

CASES = Path(__file__).parent / "cases"
HELDOUT = Path(__file__).parent / "heldout"
#: Set name → folder of cases.
SETS = {"dev": CASES, "held-out": HELDOUT}
KINDS = (
    "bad-deploy",
    "config",
    "dependency",
    "capacity",
    "certificate",
    "migration",
    "external",
    "no-change",
)
WINDOW_SECONDS = 6 * 3600


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class CaseResult:
    case: str
    investigator: str
    checks: list[Check] = field(default_factory=list)
    investigation: Investigation | None = None

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def score(self) -> float:
        return sum(c.ok for c in self.checks) / len(self.checks) if self.checks else 0.0

    @property
    def right(self) -> bool:
        """Whether the top hypothesis was right: the playbook, `top` and `not_top` checks all hold."""
        return all(c.ok for c in self.checks if c.name.startswith(("playbook ", "top ", "does not blame ")))

    @property
    def confidence(self) -> float:
        """The confidence the investigator stated in its top hypothesis (0 without one)."""
        inv = self.investigation
        return inv.hypotheses[0].confidence if inv is not None and inv.hypotheses else 0.0


@dataclass
class Case:
    name: str
    webhook: AlertmanagerWebhook
    evidence: dict[str, Any]
    expected: dict[str, Any]
    #: `dev` or `held-out`.
    set: str = "dev"

    @property
    def kind(self) -> str:
        return str(self.expected.get("kind", "unknown"))

    @property
    def start(self) -> datetime:
        return min(a.startsAt for a in self.webhook.alerts)


def load_case(folder: Path, set_name: str = "dev") -> Case:
    webhook = AlertmanagerWebhook.model_validate_json((folder / "alert.json").read_text())
    evidence = yaml.safe_load((folder / "evidence.yaml").read_text()) or {}
    expected = yaml.safe_load((folder / "expected.yaml").read_text()) or {}
    kind = expected.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{folder}/expected.yaml: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Case(folder.name, webhook, evidence, expected, set_name)


def load_cases(root: Path = CASES, set_name: str | None = None) -> list[Case]:
    """The cases under `root` (the development set by default); none when it does not exist."""
    if not root.is_dir():
        return []
    name = set_name or next((k for k, v in SETS.items() if v == root), "dev")
    return [load_case(p, name) for p in sorted(root.iterdir()) if (p / "alert.json").exists()]


def load_sets() -> dict[str, list[Case]]:
    """Every set by name: the development set, then the held-out one."""
    return {name: load_cases(root, name) for name, root in SETS.items()}


def _at(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)


def _metric(start: datetime, spec: dict[str, Any]) -> MetricSeries:
    """A 1 h series at 15 s steps: `baseline` until `onset_minutes`, then `level`."""
    onset = _at(start, float(spec.get("onset_minutes", 0)))
    end = _at(start, 2)
    points: list[tuple[float, float]] = []
    t = end - timedelta(hours=1)
    while t <= end:
        value = spec["level"] if t >= onset else spec["baseline"]
        points.append((t.timestamp(), float(value)))
        t += timedelta(seconds=15)
    return MetricSeries(name=spec["name"], query=spec.get("query", spec["name"]), points=points)


def build_view(case: Case) -> IncidentView:
    """The incident as the workflow would hold it after evidence gathering."""
    ev = case.evidence
    start = case.start
    alerts = [
        TrackedAlert.of(a if a.fingerprint else a.model_copy(update={"fingerprint": f"fp{i}"}))
        for i, a in enumerate(case.webhook.alerts)
    ]
    labels = case.webhook.commonLabels or alerts[0].labels
    service = labels.get("service") or labels.get("job") or labels.get("namespace") or ""
    sections: list[EvidenceSection] = []
    for source in ev.get("failed", []):
        sections.append(EvidenceSection(source=source, status="failed", message="connection refused"))
    if "metrics" in ev:
        sections.append(
            EvidenceSection(source="metrics", status="ok", metrics=[_metric(start, m) for m in ev["metrics"]])
        )
    if "affected_users" in ev:
        sections.append(
            EvidenceSection(
                source="affected_users", status="ok", figures={"affected users": float(ev["affected_users"])}
            )
        )
    if "logs" in ev:
        logs = [
            LogLine(
                at=_at(start, float(item.get("last_minutes", 0))),
                first_at=_at(start, float(item.get("first_minutes", 0))),
                line=item["line"],
                count=int(item.get("count", 1)),
                labels={"service": item["service"]} if item.get("service") else {},
            )
            for item in ev["logs"]
        ]
        sections.append(EvidenceSection(source="logs", status="ok" if logs else "empty", logs=logs))
    if "traces" in ev:
        traces = [TraceRef.model_validate(t) for t in ev["traces"]]
        sections.append(EvidenceSection(source="traces", status="ok" if traces else "empty", traces=traces))
    if "changes" in ev:
        service_paths = [
            p.replace("{service}", service) for p in ev.get("service_paths", ["services/{service}/**"])
        ]
        changes = []
        for c in ev["changes"]:
            committed = _at(start, -float(c["minutes_before"]))
            changes.append(
                ChangeRef(
                    repo=c.get("repo", "config"),
                    sha=c["sha"],
                    author=c.get("author", "dev"),
                    committed_at=committed,
                    summary=c["summary"],
                    paths=c.get("paths", []),
                    insertions=int(c.get("insertions", 1)),
                    deletions=int(c.get("deletions", 1)),
                    score=round(
                        change_score(committed, start, WINDOW_SECONDS, c.get("paths", []), service_paths), 4
                    ),
                    touches_service=path_matches_any(c.get("paths", []), service_paths),
                    selfheal_incident=c.get("selfheal_incident", ""),
                    diff=c.get("diff", ""),
                    service=c.get("service")
                    or owning_service(
                        c.get("paths", []),
                        own=service,
                        own_paths=service_paths,
                        templates=ev.get("service_paths", ["services/{service}/**"]),
                    ),
                )
            )
        changes.sort(key=lambda c: (-c.score, -c.committed_at.timestamp()))
        depends_on = [str(d) for d in (ev.get("depends_on") or {}).get(service, [])]
        sections.append(
            EvidenceSection(
                source="changes", status="ok" if changes else "empty", changes=changes, depends_on=depends_on
            )
        )
    if "similar" in ev:
        similar = [SimilarIncident(**s) for s in ev["similar"]]
        sections.append(
            EvidenceSection(source="similar_incidents", status="ok" if similar else "empty", similar=similar)
        )
    return IncidentView(
        id=f"eval-{case.name}",
        group_id="eval",
        group_key=case.webhook.groupKey,
        receiver=case.webhook.receiver,
        stage=Stage.INVESTIGATING,
        status="firing",
        service=service,
        severity=labels.get("severity", ""),
        alertname=labels.get("alertname", ""),
        title=case.webhook.commonAnnotations.get("summary", ""),
        opened_at=start + timedelta(minutes=1),
        alerts=alerts,
        evidence=Evidence(incident_id=f"eval-{case.name}", gathered_at=_at(start, 2), sections=sections),
    )


_PLAYBOOKS: Any = None


def match_case(case: Case) -> MatchResult | None:
    """The real library matcher on the case's alerts, as the `match_playbook` activity calls it."""
    global _PLAYBOOKS
    if _PLAYBOOKS is None:
        _PLAYBOOKS = load_playbooks([], include_library=True)
    ctx = {"public_url": "https://selfheal.example", "kube_api_url": "https://kubernetes.default.svc"}
    found: MatchResult | None = _PLAYBOOKS.match_first(
        case.webhook.alerts, incident_id=f"eval-{case.name}", settings_ctx=ctx
    )
    if found is None or found.playbook is None or not found.needs_choice():
        return found
    return _choose(case, found, ctx)


def _choose(case: Case, match: MatchResult, ctx: dict[str, str]) -> MatchResult:
    """What the incident workflow does when diagnose must choose: resolve each candidate's
    `from: query` params (from the recorded `series` labels) and take the first whose recorded
    diagnose values hold; none confirmed: the first one that rendered, as the proposal."""
    series: dict[str, str] = {str(k): str(v) for k, v in (case.evidence.get("series") or {}).items()}
    recorded: dict[str, float] = case.evidence.get("diagnose", {})
    alert = next(a for a in case.webhook.alerts if a.fingerprint == match.fingerprint)
    choice = Choice()
    for candidate in match.candidates():
        plan = candidate.plan
        if plan is None:
            plan, problems = _PLAYBOOKS.resolve(
                candidate,
                alert,
                lambda _q: [series] if series else [],
                incident_id=match_id(case),
                settings_ctx=ctx,
            )
            if plan is None:
                choice.ruled_out.append((candidate.playbook, "; ".join(problems)))
                continue
        choice.first = choice.first or plan
        failed = [
            c.name
            for c in plan.diagnose
            if c.name in recorded and not PrometheusClient.check(c.condition, [float(recorded[c.name])])
        ]
        if failed:
            choice.ruled_out.append((candidate.playbook, ", ".join(failed)))
            continue
        choice.chosen = plan
        break
    plan = choice.chosen or choice.first
    return unmatched(match, choice) if plan is None else chosen_match(match, plan, choice)


def match_id(case: Case) -> str:
    return f"eval-{case.name}"


def diagnose_case(case: Case, match: MatchResult | None) -> list[DiagnoseResult]:
    """The playbook's diagnose checks answered from the recorded query values."""
    plan = match.plan if match is not None else None
    if plan is None:
        return []
    recorded: dict[str, float] = case.evidence.get("diagnose", {})
    out = []
    for check in plan.diagnose:
        result = DiagnoseResult(
            playbook=plan.playbook, name=check.name, query=check.query, condition=check.condition
        )
        if check.name in recorded:
            result.value = float(recorded[check.name])
            result.passed = PrometheusClient.check(check.condition, [result.value])
        else:
            result.error = "no data"
        out.append(result)
    return out


def _text(inv: Investigation) -> str:
    parts = [inv.summary, *inv.open_questions]
    for h in inv.hypotheses:
        parts += [h.title, h.detail, *h.evidence]
    if inv.proposed_fix is not None:
        parts += [inv.proposed_fix.rationale, inv.proposed_fix.playbook or "", inv.proposed_fix.source]
    return "\n".join(parts)


def score(case: Case, inv: Investigation) -> list[Check]:
    exp = case.expected
    checks: list[Check] = []
    want = exp.get("playbook", "novel")
    got = inv.matched_playbook or "novel"
    checks.append(Check(f"playbook {want}", got == want, f"got {got}"))
    top = inv.hypotheses[0] if inv.hypotheses else None
    top_text = f"{top.title}\n{top.detail}\n{' '.join(top.evidence)}" if top else ""
    for s in exp.get("top", []):
        checks.append(Check(f"top mentions {s!r}", s in top_text, top.title if top else "no hypothesis"))
    text = _text(inv)
    for s in exp.get("facts", []):
        checks.append(Check(f"states {s!r}", s in text))
    for s in exp.get("not_top", []):
        checks.append(Check(f"does not blame {s!r}", s not in top_text, top.title if top else ""))
    for s in exp.get("summary_lacks", []):
        checks.append(Check(f"summary lacks {s!r}", s not in inv.summary))
    if "fix" in exp:
        kind = inv.proposed_fix.kind if inv.proposed_fix else "none"
        checks.append(Check(f"fix {exp['fix']}", kind == exp["fix"], f"got {kind}"))
    return checks


Investigator = Callable[[IncidentView, MatchResult | None, list[DiagnoseResult]], Investigation]


def builtin(view: IncidentView, match: MatchResult | None, diagnose: list[DiagnoseResult]) -> Investigation:
    from investigation.builtin import investigate

    return investigate(view, match, diagnose, started_at=datetime.now(UTC))


def run(
    cases: Iterable[Case], investigator: Investigator = builtin, name: str = "builtin"
) -> list[CaseResult]:
    results = []
    for case in cases:
        view = build_view(case)
        match = match_case(case)
        inv = investigator(view, match, diagnose_case(case, match))
        results.append(CaseResult(case.name, name, score(case, inv), inv))
    return results


def dump(inv: Investigation) -> str:
    return json.dumps(inv.model_dump(mode="json"), indent=2)


def naive(view: IncidentView, match: MatchResult | None, diagnose: list[DiagnoseResult]) -> Investigation:
    """A loudness-driven baseline: blames the newest commit, else the loudest log line.

    It exists to prove the decoy cases bite: an investigator that falls for loud, unrelated
    signals must score visibly worse than the builtin one.
    """
    from models.investigation import Hypothesis

    sections = {s.source: s for s in view.evidence.sections} if view.evidence else {}
    hyps: list[Hypothesis] = []
    changes = (
        sorted(sections["changes"].changes, key=lambda c: c.committed_at) if "changes" in sections else []
    )
    if changes:
        c = changes[-1]
        hyps.append(Hypothesis(title=f"Change {c.repo}@{c.sha[:7]} ({c.summary})", confidence=0.9))
    logs = sorted(sections["logs"].logs, key=lambda line: -line.count) if "logs" in sections else []
    if logs:
        hyps.append(Hypothesis(title=f"Log: {logs[0].line}", confidence=0.8))
    plan = match.plan if match else None
    return Investigation(
        investigator="naive",
        summary=hyps[0].title if hyps else "nothing found",
        hypotheses=hyps,
        matched_playbook=plan.playbook if plan else None,
    )


def closest(view: IncidentView, match: MatchResult | None, diagnose: list[DiagnoseResult]) -> Investigation:
    """The "closest change" baseline: the change closest before the onset that touches the
    service's paths is the top hypothesis, else there is none.

    It is the heuristic the builtin investigator started from; the cases where it fails and the
    builtin passes are the ones that need the evidence read, not just the clock.
    """
    from investigation.builtin import series_onset
    from models.investigation import Hypothesis, ProposedFix

    sections = {s.source: s for s in view.evidence.sections} if view.evidence else {}
    start = view.alert_start()
    onsets = [
        found[0]
        for series in (sections["metrics"].metrics if "metrics" in sections else [])
        if (found := series_onset(series, start)) is not None
    ]
    onset = min(onsets, default=start)
    suspects = [
        c
        for c in (sections["changes"].changes if "changes" in sections else [])
        if c.touches_service and c.committed_at <= onset + timedelta(minutes=1)
    ]
    hyps: list[Hypothesis] = []
    fix: ProposedFix | None = None
    plan = match.plan if match else None
    if plan is not None:
        hyps.append(Hypothesis(title=f"Known pattern: playbook {plan.playbook}", confidence=0.7))
        fix = ProposedFix(kind="playbook", playbook=plan.playbook)
    if suspects:
        c = max(suspects, key=lambda c: c.committed_at)
        ref = f"changes:{c.repo}@{c.sha[:7]}"
        hyps.append(
            Hypothesis(title=f"Change {c.repo}@{c.sha[:7]} ({c.summary})", confidence=0.6, evidence=[ref])
        )
        fix = fix or ProposedFix(kind="manual", rationale=f"revert {ref}", source=ref)
    return Investigation(
        investigator="closest",
        summary=hyps[0].title if hyps else "nothing found",
        hypotheses=hyps,
        matched_playbook=plan.playbook if plan else None,
        proposed_fix=fix,
    )


#: What `make eval` scores (the LLM investigator is added when a key is configured).
INVESTIGATORS: dict[str, Investigator] = {"builtin": builtin, "closest": closest}
#: Baselines the tests use to prove the decoys bite.
BASELINES: dict[str, Investigator] = {"closest": closest, "naive": naive}
