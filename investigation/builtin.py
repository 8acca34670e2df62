"""The builtin investigator: deterministic, no network, seconds.

It reads only what evidence gathering and the playbook diagnose checks already produced, so the
same inputs always give the same `Investigation` (the evals under `tests/evals/` rely on that).

How it weighs things, and why:
- The anomaly's onset is read off the metrics (the first point after which a series leaves its
  baseline), because an alert's `startsAt` lags the fault by the rule's `for:`.
- A change is suspect when it touches the service's paths and lands shortly before the onset; a
  change elsewhere, however close in time, is noise and is said to be so.
- A log line is a symptom worth naming only if it is new: lines already frequent well before the
  onset are background noise, however loud.
- A matched playbook is a known pattern; its diagnose checks confirm or contradict it.
- A similar past incident that ended with a fix lends that fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from statistics import median

from models.evidence import ChangeRef, EvidenceSection, LogLine, MetricSeries, SimilarIncident
from models.incident import IncidentView
from models.investigation import DiagnoseResult, Hypothesis, Investigation, ProposedFix
from models.plan import MatchResult

#: A log line that reads like a failure (others are not blamed, however loud).
ERRORISH = re.compile(
    r"\b(?:warn|warning|err|error|crit|critical|fatal|panic|alert|emerg)\b|exception|fail|timeout|timed out"
    r"|refused|denied|exhausted|unavailable|\b5\d\d\b",
    re.IGNORECASE,
)
#: A series has left its baseline when it moves by this factor (or this much from ~zero).
SHIFT_FACTOR = 2.0
SHIFT_FROM_ZERO = 1e-3
#: A similar incident scoring this much (same alert and service, similar text) is a recurrence; one that
#: only shares the service scores about 0.5-0.65 and lends no fix.
RECURRENCE_SCORE = 0.75
#: A change this long before the onset still counts as "just before".
CHANGE_HORIZON = timedelta(hours=2)
#: A log line first seen this long before the onset is old noise.
NOISE_MARGIN = timedelta(minutes=2)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _sections(view: IncidentView) -> dict[str, EvidenceSection]:
    if view.evidence is None:
        return {}
    return {s.source: s for s in view.evidence.sections}


def series_onset(series: MetricSeries, start: datetime) -> tuple[datetime, float, float] | None:
    """When the series left its baseline (before → after level), or None if it did not move.

    The baseline is the median of the points older than 10 minutes before the alert started;
    the onset is the first point from which the series stays shifted up to the alert start.
    """
    points = sorted(series.points)
    if len(points) < 3:
        return None
    cutoff = (start - timedelta(minutes=10)).timestamp()
    base_pts = [v for t, v in points if t < cutoff]
    if not base_pts:
        return None
    base = median(base_pts)
    after_pts = [v for t, v in points if t >= start.timestamp()] or [points[-1][1]]
    level = median(after_pts)

    def shifted(value: float) -> bool:
        if abs(base) < SHIFT_FROM_ZERO:
            return (
                abs(value) >= max(SHIFT_FROM_ZERO * 10, abs(level) / 2) and abs(level) >= SHIFT_FROM_ZERO * 10
            )
        ratio = value / base
        return ratio >= SHIFT_FACTOR or ratio <= 1 / SHIFT_FACTOR

    if not shifted(level):
        return None
    onset_ts: float | None = None
    for t, v in points:
        if t > start.timestamp():
            break
        if shifted(v):
            onset_ts = t if onset_ts is None else onset_ts
        else:
            onset_ts = None
    onset = datetime.fromtimestamp(onset_ts, UTC) if onset_ts is not None else start
    return onset, base, level


def _ago(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _change_ref(change: ChangeRef) -> str:
    return f"changes:{change.repo}@{change.sha[:7]}"


def _change_hypotheses(changes: Sequence[ChangeRef], onset: datetime, shifts: list[str]) -> list[Hypothesis]:
    """Changes touching the service just before the onset are suspects, the closest first.

    Several suspects share the belief (each later one counts less); selfheal's own fix commits
    and changes elsewhere are listed as unlikely, so a reader sees they were considered.
    """
    out: list[Hypothesis] = []
    suspects = 0
    ordered = sorted(changes[:8], key=lambda c: abs((onset - _aware(c.committed_at)).total_seconds()))
    for change in ordered:
        committed = _aware(change.committed_at)
        lead = onset - committed
        touches = change.touches_service
        in_horizon = timedelta(minutes=-1) <= lead <= CHANGE_HORIZON
        if change.selfheal_incident:
            confidence = 0.05
            why = f"selfheal's own fix for incident {change.selfheal_incident}"
        elif touches and in_horizon:
            closeness = 1.0 - max(lead.total_seconds(), 0.0) / CHANGE_HORIZON.total_seconds()
            confidence = (0.45 + 0.4 * closeness) * (0.75**suspects)
            suspects += 1
            why = "touches the service's paths"
        else:
            confidence = 0.05 + (0.1 if in_horizon else 0.0)
            why = "does not touch the service's paths" if not touches else "too far from the onset"
        when = f"{_ago(lead)} before the onset" if lead >= timedelta(0) else f"{_ago(lead)} after the onset"
        out.append(
            Hypothesis(
                title=f"Change {change.repo}@{change.sha[:7]} ({change.summary[:120]})"
                f" by {change.author[:60]}, {when}",
                detail=f"{why}; paths: {', '.join(change.paths[:5]) or '-'};"
                f" +{change.insertions}/-{change.deletions}",
                confidence=round(confidence, 3),
                evidence=[_change_ref(change), *shifts[:2]],
            )
        )
    return out


def _log_hypotheses(logs: Sequence[LogLine], onset: datetime) -> tuple[list[Hypothesis], list[str]]:
    """New error lines become symptoms; old loud lines are reported as ignored noise."""
    fresh: list[tuple[int, LogLine]] = []
    noise: list[str] = []
    for i, line in enumerate(logs):
        if not ERRORISH.search(line.line):
            continue
        first = _aware(line.first_at or line.at)
        if first < onset - NOISE_MARGIN:
            noise.append(f"{line.line[:100]} (x{line.count}, seen since before the onset)")
        else:
            fresh.append((i, line))
    fresh.sort(key=lambda item: -item[1].count)
    hyps = [
        Hypothesis(
            title=f"New error in the logs since the onset: {line.line[:200]}",
            detail=f"{line.count} occurrence(s), first at {_aware(line.first_at or line.at).isoformat()}",
            confidence=round(min(0.4, 0.2 + 0.02 * line.count), 3),
            evidence=[f"logs:{i}"],
        )
        for i, line in fresh[:2]
    ]
    return hyps, noise


def _similar_hypotheses(similar: Sequence[SimilarIncident]) -> list[Hypothesis]:
    out: list[Hypothesis] = []
    for inc in similar[:3]:
        if inc.score < RECURRENCE_SCORE:
            continue
        fixed = f"; what fixed it: {inc.fix[:200]}" if inc.fix else ""
        out.append(
            Hypothesis(
                title=f"Recurrence of {inc.incident_id}: {inc.title[:150]}",
                detail=f"ended {inc.outcome}{fixed}",
                confidence=round(min(0.5, 0.2 + 0.3 * min(inc.score, 1.0)), 3),
                evidence=[f"similar:{inc.incident_id}"],
            )
        )
    return out


def _playbook_hypothesis(match: MatchResult, diagnose: Sequence[DiagnoseResult]) -> Hypothesis:
    plan = match.plan
    assert plan is not None
    refs = [f"diagnose:{d.name}" for d in diagnose] + [f"alert:{plan.alertname}"]
    failed = [d for d in diagnose if d.passed is False]
    unknown = [d for d in diagnose if d.passed is None]
    if failed:
        confidence, how = 0.25, "but its diagnose check(s) do not hold: " + ", ".join(d.name for d in failed)
    elif diagnose and not unknown:
        confidence, how = 0.9, "and its diagnose checks hold"
    elif diagnose:
        confidence, how = 0.55, "but its diagnose checks could not be run"
    else:
        confidence, how = 0.7, "(it has no diagnose checks)"
    return Hypothesis(
        title=f"Known pattern {plan.category or 'uncategorised'}: playbook {plan.playbook} applies {how}",
        detail=plan.description[:1000],
        confidence=confidence,
        evidence=refs,
    )


def investigate(
    view: IncidentView,
    match: MatchResult | None,
    diagnose: Sequence[DiagnoseResult] = (),
    *,
    started_at: datetime | None = None,
) -> Investigation:
    """The builtin investigation of `view` (with its evidence) and the playbook match."""
    sections = _sections(view)
    start = view.alert_start()
    metrics = sections.get("metrics")
    onsets: list[tuple[datetime, str, float, float]] = []
    for series in metrics.metrics if metrics else []:
        found = series_onset(series, start)
        if found is not None:
            onsets.append((found[0], series.name, found[1], found[2]))
    onset = min((o[0] for o in onsets), default=start)
    shifts = [f"metrics:{name}" for _, name, _, _ in sorted(onsets)]

    hypotheses: list[Hypothesis] = []
    plan = match.plan if match is not None else None
    if plan is not None:
        hypotheses.append(_playbook_hypothesis(match, diagnose))  # type: ignore[arg-type]
    changes = sections.get("changes")
    hypotheses += _change_hypotheses(changes.changes if changes else [], onset, shifts)
    logs = sections.get("logs")
    log_hyps, noise = _log_hypotheses(logs.logs if logs else [], onset)
    hypotheses += log_hyps
    similar = sections.get("similar_incidents")
    similar_hyps = _similar_hypotheses(similar.similar if similar else [])
    hypotheses += similar_hyps
    traces = sections.get("traces")
    if traces and traces.traces:
        names: dict[str, int] = {}
        for t in traces.traces:
            names[t.root_name or "?"] = names.get(t.root_name or "?", 0) + 1
        top, count = max(names.items(), key=lambda kv: kv[1])
        hypotheses.append(
            Hypothesis(
                title=f"Error traces concentrate in {top} ({count} of {len(traces.traces)})",
                confidence=0.2,
                evidence=[f"traces:{t.trace_id}" for t in traces.traces if (t.root_name or "?") == top][:3],
            )
        )
    hypotheses.sort(key=lambda h: -h.confidence)

    fix: ProposedFix | None = None
    if plan is not None:
        fix = ProposedFix(
            kind="playbook",
            playbook=plan.playbook,
            rationale=f"playbook {plan.playbook} matched {plan.alertname} on {plan.target}",
        )
    else:
        past = next(
            (s for s in (similar.similar if similar else []) if s.fix and s.score >= RECURRENCE_SCORE), None
        )
        suspect = next(
            (
                h
                for h in hypotheses
                if h.evidence and h.evidence[0].startswith("changes:") and h.confidence >= 0.5
            ),
            None,
        )
        if suspect is not None:
            ref = suspect.evidence[0].removeprefix("changes:")
            fix = ProposedFix(
                kind="manual",
                rationale=f"revert {ref} and watch {view.alertname or 'the alert'} resolve",
                source=suspect.evidence[0],
            )
        elif past is not None:
            fix = ProposedFix(
                kind="manual",
                rationale=f"what fixed {past.incident_id}: {past.fix}",
                source=f"similar:{past.incident_id}",
            )

    questions: list[str] = []
    for s in sections.values():
        if s.status == "failed":
            questions.append(f"The {s.source} source failed ({s.message[:120]}): check it by hand.")
    for d in diagnose:
        if d.passed is False:
            questions.append(
                f"Diagnose check {d.name!r} does not hold (value {d.value}): is this really the pattern?"
            )
    if changes is not None and not any(
        h.confidence >= 0.5 and h.evidence[0].startswith("changes:") for h in hypotheses if h.evidence
    ):
        questions.append(
            f"No change to {view.service or 'the service'} just before the onset in the watched repositories:"
            " was something deployed or changed elsewhere?"
        )
    if plan is None and not any(h.confidence >= 0.5 for h in hypotheses):
        questions.append("Novel: no playbook matched and no strong suspect; what changed around the onset?")

    affected = sections.get("affected_users")
    impact = ""
    if affected and affected.figures:
        impact = " Impact: " + ", ".join(f"{k} {v:g}" for k, v in affected.figures.items()) + "."
    head = f"{view.alertname or 'Alert'} on {view.service or 'unknown service'}"
    if view.severity:
        head += f" ({view.severity})"
    head += f" firing since {start.isoformat()}"
    if onsets:
        moved = ", ".join(n for _, n, _, _ in sorted(onsets)[:3])
        head += f"; the anomaly began around {onset.isoformat()} ({moved})"
    summary = head + "."
    if hypotheses:
        summary += f" Most likely: {hypotheses[0].title} ({hypotheses[0].confidence:.0%})."
    summary += impact
    summary += f" Known pattern: playbook {plan.playbook}." if plan else " Novel: no playbook matched."
    if noise:
        summary += f" Ignored as background noise: {'; '.join(noise[:2])}."
    now = datetime.now(UTC)
    return Investigation(
        investigator="builtin",
        summary=summary[:4000],
        hypotheses=hypotheses[:10],
        matched_playbook=plan.playbook if plan else None,
        proposed_fix=fix,
        open_questions=questions[:10],
        diagnose=list(diagnose),
        started_at=started_at,
        duration_seconds=(now - started_at).total_seconds() if started_at else 0.0,
    )
