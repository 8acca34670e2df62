"""The builtin investigator: deterministic, no network, seconds.

It reads only what evidence gathering and the playbook diagnose checks already produced, so the
same inputs always give the same `Investigation` (the evals under `tests/evals/` rely on that).

How it weighs things, and why:
- The anomaly's onset is read off the metrics (the first point after which a series leaves its
  baseline), because an alert's `startsAt` lags the fault by the rule's `for:`.
- A change is suspect when it touches the service's paths and lands shortly before the onset; a
  change elsewhere, however close in time, is noise and is said to be so, unless it belongs to a
  service the evidence names or the service depends on (configured, or seen in child spans).
- Evidence outranks the clock: a change whose summary, paths or diff holds a name from a new
  error line, an error trace or an alert label (`investigation.xref`) ranks above a closer change
  nothing names, and its hypothesis quotes both (the diff line, when one matches). A change that
  only touches docs, tests, comments or formatting is discounted.
- Some causes are no change at all, and the evidence says so outright: an expired certificate, a
  provider's host failing, packet loss, an id or a disk filled by growth, demand that rose before
  anything else (`investigation.causes`). When no change touches what such a cause names, it
  outranks changes tied to the incident only by timing, labels or nearby lines, and no revert is
  proposed.
- A log line is a symptom worth naming only if it is new: lines already frequent well before the
  onset are background noise, however loud.
- A matched playbook is a known pattern; its diagnose checks confirm or contradict it.
- A similar past incident that ended with a fix lends that fix.
- Every hypothesis says what ties it to the cause; when the top two are close, the summary says
  so and the open questions say what would tell them apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from statistics import median

from pydantic import ValidationError

from investigation.causes import Cause, line_cause, load_cause, merge, touching
from investigation.xref import ChangeMatch, Clues, cosmetic, gather_clues, match_change
from models.evidence import ChangeRef, EvidenceSection, LogLine, MetricSeries, SimilarIncident, TraceRef
from models.incident import IncidentView
from models.investigation import DiagnoseResult, Hypothesis, Investigation, ProposedFix, RevertRef
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
#: A change the evidence names still counts this long before the onset (a migration, a rename
#: deployed earlier in the day); one nothing names must be within CHANGE_HORIZON.
NAMED_HORIZON = timedelta(hours=6)
#: A log line first seen this long before the onset is old noise.
NOISE_MARGIN = timedelta(minutes=2)
#: The top two hypotheses are a close call when their confidences differ by less than this, or
#: when both are changes only timing ties to the cause, committed within CLOSE_CALL_TIME.
CLOSE_CALL = 0.1
CLOSE_CALL_TIME = timedelta(minutes=15)
#: How a hypothesis that only timing supports begins its detail.
TIMING_ONLY = "tied to the cause by timing only"
#: What a change keeps of its belief when the evidence names a cause no change made and no error
#: line or trace ties the change to the incident itself (timing, an alert label or the lines
#: around its hunk are all that tie it).
OUTRANKED_BY_CAUSE = 0.5
#: A new error line names the incident's cause only if it occurs at least this share as often as
#: the loudest new error line.
CAUSE_SHARE = 0.1


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


def _revert_ref(change: ChangeRef | None) -> RevertRef | None:
    """The change as a revert selfheal may plan; None when its repo name or sha is not one."""
    if change is None:
        return None
    try:
        return RevertRef(repo=change.repo, sha=change.sha.lower())
    except ValidationError:
        return None


def _change_ref(change: ChangeRef) -> str:
    return f"changes:{change.repo}@{change.sha[:7]}"


def _change_hypotheses(
    changes: Sequence[ChangeRef],
    onset: datetime,
    shifts: list[str],
    clues: Clues,
    causes: Sequence[Cause] = (),
) -> list[Hypothesis]:
    """Changes the evidence names first, then changes touching the service (or a dependency) just
    before the onset, the closest first.

    Several unnamed suspects share the belief (each later one counts less); a change that only
    touches docs, tests, comments or formatting is discounted; selfheal's own fix commits and
    changes elsewhere are listed as unlikely, so a reader sees they were considered. A change
    named only by the lines around its hunk is believed less than one whose changed lines, paths
    or summary are named. When the evidence names a cause no change made (`causes`), a change no
    error line or trace ties to the incident keeps OUTRANKED_BY_CAUSE of its belief.
    """
    out: list[Hypothesis] = []
    suspects = 0
    ordered = sorted(changes[:8], key=lambda c: abs((onset - _aware(c.committed_at)).total_seconds()))
    matches = {c.sha: match_change(c, clues) for c in ordered}
    any_named = any(
        m and not c.selfheal_incident and _within(onset - _aware(c.committed_at), NAMED_HORIZON)
        for c in ordered
        for m in [matches[c.sha]]
    )
    for change in ordered:
        lead = onset - _aware(change.committed_at)
        touches = change.touches_service or bool(change.service and change.service == clues.service)
        other = change.service if change.service and change.service != clues.service else ""
        dependency = clues.dependencies.get(other, "") if other and not touches else ""
        in_horizon = _within(lead, CHANGE_HORIZON)
        found = matches[change.sha]
        idle = "" if _names_its_file(found) else cosmetic(change)
        refs = [_change_ref(change)]
        if change.selfheal_incident:
            confidence = 0.05
            why = f"selfheal's own fix for incident {change.selfheal_incident}"
        elif found and _within(lead, NAMED_HORIZON):
            closeness = 1.0 - max(lead.total_seconds(), 0.0) / NAMED_HORIZON.total_seconds()
            confidence = (0.6 if found[0].strength >= 2 else 0.45) + 0.25 * closeness
            why = "tied to the cause by the evidence: " + _tied(found)
            if idle:
                confidence *= 0.4
                why += f"; but it {idle}"
            if causes and not _tied_by_errors(found):
                confidence *= OUTRANKED_BY_CAUSE
                why += f"; while {causes[0].ref} names a cause no change made"
            refs += list(dict.fromkeys(m.clue.ref for m in found[:3]))
        elif (touches or dependency) and in_horizon:
            closeness = 1.0 - max(lead.total_seconds(), 0.0) / CHANGE_HORIZON.total_seconds()
            confidence = (0.45 + 0.4 * closeness) * (0.75**suspects)
            if touches:
                why = f"{TIMING_ONLY}: touches the service's paths"
            else:
                confidence *= 0.8
                why = f"{TIMING_ONLY}: changes {other}, a dependency ({dependency})"
            if any_named:
                confidence *= 0.6
                why += "; nothing in the errors, traces or labels names it, while they name another change"
            if causes:
                confidence *= OUTRANKED_BY_CAUSE
                why += f"; nothing names it, while {causes[0].ref} names a cause no change made"
            if idle:
                confidence *= 0.25
                why += f"; discounted: it {idle}"
            else:
                suspects += 1
        else:
            confidence = 0.05 + (0.1 if in_horizon else 0.0)
            if other and not touches:
                why = f"changes {other}, which neither the evidence names nor the service depends on"
            else:
                why = "does not touch the service's paths" if not touches else "too far from the onset"
        when = f"{_ago(lead)} before the onset" if lead >= timedelta(0) else f"{_ago(lead)} after the onset"
        first = _first_change(change) if not found or found[0].where != "diff" else ""
        out.append(
            Hypothesis(
                title=f"Change {change.repo}@{change.sha[:7]} ({change.summary[:120]})"
                f" by {change.author[:60]}, {when}",
                detail=f"{why}; paths: {', '.join(change.paths[:5]) or '-'};"
                f" +{change.insertions}/-{change.deletions}"
                + (f"; first changed line: {first!r}" if first else ""),
                confidence=round(confidence, 3),
                evidence=[*refs, *shifts[:2]],
            )
        )
    return out


def _within(lead: timedelta, horizon: timedelta) -> bool:
    return timedelta(minutes=-1) <= lead <= horizon


def _names_its_file(found: Sequence[ChangeMatch]) -> bool:
    """Whether the evidence names a file the change edits: a file the running service reports
    reading (`malware_patterns.txt:10414`) is data, however much its name looks like docs."""
    return any(m.where == "path" and m.clue.kind == "file" for m in found)


def _tied_by_errors(found: Sequence[ChangeMatch]) -> bool:
    """Whether an error line or trace names what the change edits (its lines, paths, summary or
    service), not only an alert label (which says where the symptom shows, not why) or the
    unchanged lines around its hunk."""
    return any(m.strength >= 2 and not m.clue.ref.startswith("alert:") for m in found)


def _tied(found: Sequence[ChangeMatch]) -> str:
    """The strongest matches, one per piece of evidence, quoted."""
    seen: set[str] = set()
    parts: list[str] = []
    for m in found:
        if m.clue.ref in seen:
            continue
        seen.add(m.clue.ref)
        parts.append(m.describe())
        if len(parts) == 2:
            break
    return "; ".join(parts)


def _causes(
    fresh: Sequence[tuple[int, LogLine]],
    onsets: Sequence[tuple[datetime, str, float, float]],
    changes: Sequence[ChangeRef],
    onset: datetime,
    clues: Clues,
) -> list[Cause]:
    """The causes no change made that the evidence names, strongest first: one per new error line
    that names one (`causes.line_cause`) and that no change in the window touches, and demand that
    rose before every suspect change (`causes.load_cause`).

    Only changes that could alter behaviour count: not docs or tests, not selfheal's own fixes,
    not after the onset. A line says a cause only if it is CAUSE_SHARE of the loudest new error:
    a handful of certificate errors beside thousands of others explain little of the incident.
    """
    window = [
        c
        for c in changes
        if not c.selfheal_incident
        and not cosmetic(c)
        and _within(onset - _aware(c.committed_at), NAMED_HORIZON)
    ]
    out: list[Cause] = []
    loudest = max((line.count for _, line in fresh), default=0)
    for i, line in fresh:
        cause = line_cause(i, line, clues.service)
        if (
            cause is not None
            and line.count >= CAUSE_SHARE * loudest
            and touching(cause, line, i, clues.service, window) is None
        ):
            out.append(cause)
    suspects = [
        _aware(c.committed_at)
        for c in window
        if c.touches_service or c.service in (clues.service, *clues.dependencies) or match_change(c, clues)
    ]
    load = load_cause(onsets, suspects, CHANGE_HORIZON)
    if load is not None:
        out.append(load)
    out = merge(out)
    out.sort(key=lambda c: (-c.confidence, -c.weight))
    return out


def _first_change(change: ChangeRef) -> str:
    for line in change.diff.splitlines():
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---")) and line[1:].strip():
            return line.strip()[:160]
    return ""


def _fresh_errors(logs: Sequence[LogLine], onset: datetime) -> list[tuple[int, LogLine]]:
    """The error lines first seen around or after the onset, with their index in the section."""
    return [
        (i, line)
        for i, line in enumerate(logs)
        if ERRORISH.search(line.line) and _aware(line.first_at or line.at) >= onset - NOISE_MARGIN
    ]


def _log_hypotheses(
    logs: Sequence[LogLine], onset: datetime, skip: set[str] | frozenset[str] = frozenset()
) -> tuple[list[Hypothesis], list[str]]:
    """New error lines become symptoms (but those in `skip`, already named as a cause); old loud
    lines are reported as ignored noise."""
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
    fresh = [(i, line) for i, line in fresh if f"logs:{i}" not in skip]
    fresh.sort(key=lambda item: -item[1].count)
    hyps = [
        Hypothesis(
            title=f"New error in the logs since the onset: {line.line[:200]}",
            detail=f"tied to the cause by logs:{i}, new since the onset: {line.count} occurrence(s),"
            f" first at {_aware(line.first_at or line.at).isoformat()}",
            confidence=round(min(0.4, 0.2 + 0.02 * line.count), 3),
            evidence=[f"logs:{i}"],
        )
        for i, line in fresh[:2]
    ]
    return hyps, noise


def _trace_hypothesis(traces: Sequence[TraceRef], service: str) -> Hypothesis:
    """Where the error traces concentrate, and which other service's spans fail in them."""
    names: dict[str, int] = {}
    for t in traces:
        names[t.root_name or "?"] = names.get(t.root_name or "?", 0) + 1
    top, count = max(names.items(), key=lambda kv: kv[1])
    failing: dict[str, int] = {}
    for t in traces:
        for span in {sp.service for sp in t.spans if sp.error and sp.service and sp.service != service}:
            failing[span] = failing.get(span, 0) + 1
    title = f"Error traces concentrate in {top} ({count} of {len(traces)})"
    if failing:
        worst, n = max(failing.items(), key=lambda kv: (kv[1], kv[0]))
        title += f"; spans of {worst} fail in {n} of them"
    return Hypothesis(
        title=title[:300],
        detail="tied to the cause by the error traces",
        confidence=0.2,
        evidence=[f"traces:{t.trace_id}" for t in traces if (t.root_name or "?") == top][:3],
    )


def _close_call(hypotheses: Sequence[Hypothesis], committed: dict[str, datetime]) -> str:
    """When the top two are close, the question that would tell them apart; else "".

    Close: confidences within CLOSE_CALL, or two changes that only timing ties to the cause,
    committed within CLOSE_CALL_TIME of each other (their ranking is then only which is closer).
    """
    if len(hypotheses) < 2:
        return ""
    a, b = hypotheses[0], hypotheses[1]
    ra_at = committed.get(a.evidence[0] if a.evidence else "")
    rb_at = committed.get(b.evidence[0] if b.evidence else "")
    by_timing = (
        a.detail.startswith(TIMING_ONLY)
        and b.detail.startswith(TIMING_ONLY)
        and ra_at is not None
        and rb_at is not None
        and abs(ra_at - rb_at) <= CLOSE_CALL_TIME
    )
    if a.confidence < 0.2 or (a.confidence - b.confidence >= CLOSE_CALL and not by_timing):
        return ""
    ra = a.evidence[0] if a.evidence else a.title[:80]
    rb = b.evidence[0] if b.evidence else b.title[:80]
    head = f"Close call between {ra} ({a.confidence:.0%}) and {rb} ({b.confidence:.0%}): "
    if ra.startswith("changes:") and rb.startswith("changes:"):
        ask = (
            "which of the two reached the service first (deploy times against the onset), does a new"
            " error or trace name anything either diff changes, and does reverting one clear the alert?"
        )
    elif ra.startswith("changes:") or rb.startswith("changes:"):
        change, other = (ra, rb) if ra.startswith("changes:") else (rb, ra)
        ask = (
            f"does {change}'s diff touch what {other} shows failing? If the error started before the"
            f" change was deployed, or goes on after reverting it, the change is not the cause."
        )
    else:
        ask = f"which of {ra} and {rb} started first, and does one explain the other?"
    return (head + ask)[:1000]


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
    logs = sections.get("logs")
    traces = sections.get("traces")
    labels: dict[str, str] = {}
    for alert in view.alerts:
        for key, value in alert.labels.items():
            labels.setdefault(key, value)
    fresh = _fresh_errors(logs.logs if logs else [], onset)
    clues = gather_clues(
        view.service,
        logs=fresh,
        traces=traces.traces if traces else [],
        labels=labels,
        alertname=view.alertname,
        depends_on=changes.depends_on if changes else [],
    )
    change_list = changes.changes if changes else []
    causes = _causes(fresh, onsets, change_list, onset, clues)
    hypotheses += _change_hypotheses(change_list, onset, shifts, clues, causes)
    cause_hyps = [
        Hypothesis(
            title=cause.title()[:300],
            detail=cause.detail(len(change_list))[:4000],
            confidence=cause.confidence,
            evidence=[*cause.refs[:4], *[s for s in shifts[:2] if s != cause.ref]],
        )
        for cause in causes
    ]
    hypotheses += cause_hyps
    log_hyps, noise = _log_hypotheses(
        logs.logs if logs else [], onset, skip={r for c in causes for r in c.refs}
    )
    hypotheses += log_hyps
    similar = sections.get("similar_incidents")
    similar_hyps = _similar_hypotheses(similar.similar if similar else [])
    hypotheses += similar_hyps
    if traces and traces.traces:
        hypotheses.append(_trace_hypothesis(traces.traces, view.service))
    hypotheses.sort(key=lambda h: -h.confidence)
    committed = {_change_ref(c): _aware(c.committed_at) for c in (changes.changes if changes else [])}
    close = _close_call(hypotheses, committed)

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
        # A change is worth reverting only if it outranks every cause no change made.
        ranked_above_causes = hypotheses[
            : next((i for i, h in enumerate(hypotheses) if any(h is c for c in cause_hyps)), len(hypotheses))
        ]
        suspect = next(
            (
                h
                for h in ranked_above_causes
                if h.evidence and h.evidence[0].startswith("changes:") and h.confidence >= 0.5
            ),
            None,
        )
        if suspect is not None:
            ref = suspect.evidence[0].removeprefix("changes:")
            # Which commit, exactly (repo as configured, full sha): selfheal can plan the revert.
            change = next((c for c in change_list if _change_ref(c) == suspect.evidence[0]), None)
            fix = ProposedFix(
                kind="manual",
                rationale=f"revert {ref} and watch {view.alertname or 'the alert'} resolve",
                source=suspect.evidence[0],
                revert=_revert_ref(change),
            )
        elif past is not None:
            fix = ProposedFix(
                kind="manual",
                rationale=f"what fixed {past.incident_id}: {past.fix}",
                source=f"similar:{past.incident_id}",
            )

    questions: list[str] = [close] if close else []
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
    if close:
        summary += (
            f" A close call: the runner-up ({hypotheses[1].confidence:.0%}) may as well be the cause;"
            " see the open questions for what would tell them apart."
        )
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
