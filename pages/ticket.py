"""`build_page`: the incident's single page on its ticket.

The activities build the page and hand it to the tracker. The page is a neutral `Document`; each
tracker renders it in its own format, and every alert-, log- or model-derived string in it stays
data (see `pages.render`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from models.evidence import EvidenceSection
from models.incident import IncidentView
from models.investigation import AgentRun
from pages.document import Block, Bullets, Code, Document, Heading, Image, Paragraph, Runs, Table, Text
from pages.redact import redact

#: The most recent timeline events on the page.
MAX_TIMELINE = 50
MAX_LOG_LINES = 20
MAX_ROWS = 10
#: Suspect changes whose changed lines the page quotes, and how many lines of each.
DIFFS_SHOWN = 3
DIFF_LINES = 40


def _t(text: str, *, bold: bool = False, code: bool = False, link: str | None = None) -> Text:
    return Text(text=text, bold=bold, code=code, link=link)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


def _ago(delta: timedelta) -> str:
    """A duration as a reader scans it: `2h 5m`, `12m 3s`, `40s`."""
    seconds = int(abs(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _section(view: IncidentView, source: str) -> EvidenceSection | None:
    if view.evidence is None:
        return None
    return next((s for s in view.evidence.sections if s.source == source), None)


def _status_note(section: EvidenceSection | None, what: str) -> Paragraph:
    if section is None:
        return Paragraph(runs=[_t(f"No {what} gathered yet.")])
    note = f"No {what}: {section.status}"
    return Paragraph(runs=[_t(note + (f" ({section.message[:300]})" if section.message else "") + ".")])


def _summary(view: IncidentView, workflow_url: str) -> list[Block]:
    facts: list[Runs] = [
        [_t("What fired: ", bold=True), _t(view.alertname or "unknown alert"), _t(f" — {view.title}")]
        if view.title
        else [_t("What fired: ", bold=True), _t(view.alertname or "unknown alert")],
        [_t("Service: ", bold=True), _t(view.service or "unknown")],
        [_t("Severity: ", bold=True), _t(view.severity or "unknown")],
        [_t("Status: ", bold=True), _t(f"{view.status}, stage {view.stage.value}")],
        [
            _t("Outcome: ", bold=True),
            _t(
                (view.outcome.value if view.outcome is not None else "open")
                + (f" (closed {_when(view.closed_at)})" if view.closed_at else "")
            ),
        ],
        [_t("Alert group: ", bold=True), _t(view.group_key), _t(f" (receiver {view.receiver})")],
    ]
    if workflow_url:
        facts.append([_t("Workflow: ", bold=True), _t("Temporal workflow " + view.id, link=workflow_url)])
    runbooks = list(
        dict.fromkeys(a.annotations["runbook_url"] for a in view.alerts if a.annotations.get("runbook_url"))
    )
    for url in runbooks[:3]:
        clean = redact(url)
        facts.append([_t("Runbook: ", bold=True), _t(clean, link=clean)])
    rows: list[list[Runs]] = []
    for alert in view.alerts[:MAX_ROWS]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        note = redact(alert.annotations.get("summary") or alert.annotations.get("description") or "")
        source: Runs = [_t("graph", link=alert.generatorURL)] if alert.generatorURL else []
        rows.append([[_t(alert.status)], [_t(_when(alert.startsAt))], [_t(labels)], [_t(note)], source])
    blocks: list[Block] = [
        Heading(level=2, text=f"selfheal incident {view.id}"),
        Bullets(items=facts),
    ]
    if rows:
        blocks.append(Table(header=["status", "since", "labels", "summary", "source"], rows=rows))
    if len(view.alerts) > MAX_ROWS:
        blocks.append(Paragraph(runs=[_t(f"… and {len(view.alerts) - MAX_ROWS} more alerts.")]))
    if view.truncated_alerts:
        blocks.append(
            Paragraph(
                runs=[
                    _t("Truncated: ", bold=True),
                    _t(
                        f"the last notification left out {view.truncated_alerts} more alerts of this group"
                        " (Alertmanager's max_alerts, or selfheal's max_alerts_per_notification); see"
                        " Alertmanager for all of them."
                    ),
                ]
            )
        )
    return blocks


def _impact(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Impact")]
    section = _section(view, "affected_users")
    if section is None or not section.figures:
        blocks.append(_status_note(section, "affected-users figure"))
    else:
        for name, value in section.figures.items():
            blocks.append(Paragraph(runs=[_t(f"{name}: {value:g}", bold=True)]))
    if section is not None and section.query:
        blocks.append(Paragraph(runs=[_t("Query: "), _t(section.query, code=True)]))
    return blocks


def _evidence(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Evidence")]
    if view.evidence is None:
        blocks.append(Paragraph(runs=[_t("Evidence is being gathered.")]))
        return blocks
    blocks.append(
        Bullets(
            items=[
                [_t(s.source.replace("_", " "), bold=True), _t(f": {s.status}")]
                + ([_t(f" ({s.message[:200]})")] if s.message else [])
                for s in view.evidence.sections
            ]
        )
    )
    metrics = _section(view, "metrics")
    blocks.append(Heading(level=3, text="Metric graphs"))
    if metrics is None or not metrics.metrics:
        blocks.append(_status_note(metrics, "metric graphs"))
    else:
        for series in metrics.metrics[:MAX_ROWS]:
            blocks.append(
                Paragraph(
                    runs=[
                        _t(series.name, bold=True),
                        _t(f" ({len(series.points)} points): "),
                        _t(series.query, code=True),
                    ]
                )
            )
            if series.graph:
                blocks.append(Image(attachment=series.graph, alt=f"graph of {series.name}"))
    logs = _section(view, "logs")
    blocks.append(Heading(level=3, text="Log excerpt"))
    if logs is None or not logs.logs:
        blocks.append(_status_note(logs, "log lines"))
    else:
        if logs.query:
            blocks.append(Paragraph(runs=[_t("Query: "), _t(logs.query, code=True)]))
        lines = [
            f"{_when(line.at)} x{line.count}"
            + (f" (since {_when(line.first_at)})" if line.first_at and line.count > 1 else "")
            + f" {line.line}"[:500]
            for line in logs.logs[:MAX_LOG_LINES]
        ]
        blocks.append(Code(text="\n".join(lines), trim=2))
    traces = _section(view, "traces")
    blocks.append(Heading(level=3, text="Error traces"))
    if traces is None or not traces.traces:
        blocks.append(_status_note(traces, "error traces"))
    else:
        blocks.append(
            Bullets(
                items=[
                    [
                        _t(tr.trace_id, code=True, link=tr.url or None),
                        _t(f" {tr.duration_ms:.0f} ms {tr.root_service} {tr.root_name}".rstrip()),
                    ]
                    for tr in traces.traces[:MAX_ROWS]
                ]
            )
        )
    return blocks


def _changes(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Suspect changes")]
    section = _section(view, "changes")
    if section is None or not section.changes:
        blocks.append(_status_note(section, "suspect changes"))
        return blocks
    start = view.alert_start()
    rows: list[list[Runs]] = []
    for ch in section.changes[:MAX_ROWS]:
        paths = ", ".join(ch.paths[:5]) + (f" (+{len(ch.paths) - 5} more)" if len(ch.paths) > 5 else "")
        rows.append(
            [
                [_t(f"{ch.repo}@{ch.sha[:10]}", code=True, link=ch.url or None)],
                [_t(ch.author)],
                [_t(_ago(start - ch.committed_at) + (" before" if ch.committed_at <= start else " after"))],
                [_t(ch.summary[:200])],
                [_t(paths)],
                [_t(f"+{ch.insertions} -{ch.deletions}")],
                [_t(f"{ch.score:.2f}" + (" (touches the service)" if ch.touches_service else ""))],
            ]
        )
    blocks.append(
        Table(header=["commit", "author", "alert start", "summary", "paths", "diff", "score"], rows=rows)
    )
    # The changed lines of the most suspect changes, so a reader (and the LLM) can check the cause.
    for ch in [c for c in section.changes if c.diff][:DIFFS_SHOWN]:
        lines = ch.diff.splitlines()
        shown = "\n".join(lines[:DIFF_LINES]) + (
            f"\n… {len(lines) - DIFF_LINES} more lines" if len(lines) > DIFF_LINES else ""
        )
        blocks.append(Paragraph(runs=[_t(f"{ch.repo}@{ch.sha[:10]}", code=True), _t(f" {ch.summary[:120]}")]))
        blocks.append(Code(text=redact(shown), trim=2))
    return blocks


def _similar(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Similar incidents")]
    section = _section(view, "similar_incidents")
    if section is None or not section.similar:
        blocks.append(_status_note(section, "similar incidents"))
        return blocks
    rows = [
        [
            [_t(inc.incident_id, link=inc.url or None)],
            [_t(inc.title[:200])],
            [_t(inc.outcome)],
            [_t(inc.fix[:300] or "-")],
            [_t(f"{inc.score:.2f}")],
        ]
        for inc in section.similar[:MAX_ROWS]
    ]
    blocks.append(Table(header=["incident", "title", "outcome", "fix that worked", "similarity"], rows=rows))
    return blocks


def _agent_run(run: AgentRun) -> Bullets:
    """What the model run did and cost, so a reader can weigh the answer against its price."""
    calls = ", ".join(f"{name} {n}" for name, n in sorted(run.tool_calls.items(), key=lambda kv: -kv[1]))
    cost = (
        f"estimated cost ${run.cost_usd:.4f}"
        if run.cost_usd is not None
        else f"cost unknown (no price for {run.model} in investigation.llm.prices)"
    )
    items: list[Runs] = [
        [
            _t("Model run: ", bold=True),
            _t(run.model, code=True),
            _t(f", {run.outcome}" + (f" (stopped by the {run.stopped_by} budget)" if run.stopped_by else "")),
            _t(f", {run.wall_seconds:.1f} s wall time."),
        ],
        [
            _t("Usage: ", bold=True),
            _t(
                f"{run.requests} model requests, {run.input_tokens:,} input and {run.output_tokens:,}"
                f" output tokens, {cost}."
            ),
        ],
        [_t("Tool calls: ", bold=True), _t(f"{run.tool_call_total}" + (f" ({calls})." if calls else "."))],
    ]
    for edit in run.edits[:MAX_ROWS]:
        read = ", ".join(edit.read_before[:10]) or "nothing"
        items.append([_t("Edited ", bold=True), _t(edit.path, code=True), _t(f" after reading {read}.")])
    return Bullets(items=items)


def _investigation(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Investigation")]
    inv = view.investigation
    if inv is None:
        blocks.append(Paragraph(runs=[_t("Not investigated yet.")]))
        return blocks
    blocks.append(
        Paragraph(
            runs=[_t(f"{inv.investigator} investigator, status {inv.status}, {inv.duration_seconds:.1f} s.")]
            + ([_t(f" {inv.message[:300]}")] if inv.message else [])
        )
    )
    if inv.run is not None:
        blocks.append(_agent_run(inv.run))
    for para in [p for p in inv.summary.split("\n\n") if p.strip()][:10]:
        blocks.append(Paragraph(runs=[_t(para)]))
    if inv.hypotheses:
        blocks.append(Heading(level=3, text="Hypotheses"))
        rows = [
            [
                [_t(str(i))],
                [_t(f"{hyp.confidence:.0%}")],
                [_t(hyp.title, bold=True)] + ([_t(" — " + hyp.detail[:1000])] if hyp.detail else []),
                [_t(", ".join(hyp.evidence) or "-")],
            ]
            for i, hyp in enumerate(inv.hypotheses, 1)
        ]
        blocks.append(Table(header=["#", "confidence", "hypothesis", "evidence"], rows=rows))
    blocks.append(
        Paragraph(
            runs=[_t("Matched playbook: ", bold=True), _t(inv.matched_playbook, code=True)]
            if inv.matched_playbook
            else [_t("Matched playbook: ", bold=True), _t("none — novel incident")]
        )
    )
    if inv.diagnose:
        blocks.append(
            Bullets(
                items=[
                    [
                        _t(f"check {d.name} ({d.playbook}): "),
                        _t(d.condition, code=True),
                        _t(
                            (" passed" if d.passed else " failed" if d.passed is False else " not run")
                            + (f", value {d.value:g}" if d.value is not None else "")
                            + (f", {d.error[:200]}" if d.error else "")
                        ),
                    ]
                    for d in inv.diagnose[:MAX_ROWS]
                ]
            )
        )
    if inv.diagnostics:
        blocks.append(Heading(level=3, text="Diagnostics"))
        items: list[Runs] = []
        for diag in inv.diagnostics[:MAX_ROWS]:
            said = diag.error or "; ".join(diag.lines[:10])
            items.append(
                [
                    _t(f"{diag.name}: ", bold=True),
                    _t(redact(said)[:1500]),
                    _t(" — "),
                    _t(diag.source[:300], code=True),
                ]
            )
        blocks.append(Bullets(items=items))
    if inv.open_questions:
        blocks.append(Heading(level=3, text="Open questions"))
        blocks.append(Bullets(items=[[_t(q)] for q in inv.open_questions]))
    return blocks


def _coding(view: IncidentView) -> list[Block]:
    """The coding agent's draft: why, the patch and its tests' output (shown only when it ran)."""
    result = view.coding
    if result is None:
        return []
    blocks: list[Block] = [
        Heading(level=2, text="Coding agent"),
        Paragraph(runs=[_t(f"Status {result.status}. ", bold=True), _t(result.message[:500])]),
    ]
    if result.run is not None:
        blocks.append(_agent_run(result.run))
    for para in [p for p in result.summary.split("\n\n") if p.strip()][:10]:
        blocks.append(Paragraph(runs=[_t(para)]))
    if result.patch:
        blocks.append(
            Paragraph(
                runs=[_t("Patch to "), _t(result.repo, code=True), _t(f" ({', '.join(result.files)}):")]
            )
        )
        blocks.append(Code(text=redact(result.patch)))
    if result.test_output:
        verdict = {True: "passed", False: "failed", None: "not run"}[result.tests_passed]
        blocks.append(Paragraph(runs=[_t(f"Tests on a clean checkout with the patch: {verdict}.")]))
        blocks.append(Code(text=redact(result.test_output)))
    return blocks


def _proposed_fix(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Proposed fix")]
    fix = view.investigation.proposed_fix if view.investigation is not None else None
    if view.proposal is not None:
        p = view.proposal
        if p.kind == "playbook":
            blocks.append(
                Paragraph(
                    runs=[
                        _t("Playbook "),
                        _t(p.playbook, code=True),
                        _t(f" ({p.mode}) on "),
                        _t(p.target, code=True),
                        _t("."),
                    ]
                )
            )
        else:
            # The investigation's proposal, planned with the service's defaults: runs once approved.
            blocks.append(
                Paragraph(
                    runs=[
                        _t(f"Proposed {p.kind}", bold=True),
                        _t(" on "),
                        _t(p.target, code=True),
                        _t(f": {p.description}" if p.description else "."),
                        _t(" It runs only if approved."),
                    ]
                )
            )
            if fix is not None and fix.rationale:
                blocks.append(
                    Paragraph(
                        runs=[_t("Investigation: ", bold=True), _t(fix.rationale)]
                        + ([_t(f" (from {fix.source})")] if fix.source else [])
                    )
                )
        if p.params:
            blocks.append(Paragraph(runs=[_t(", ".join(f"{k}={v}" for k, v in sorted(p.params.items())))]))
        if p.steps:
            blocks.append(Bullets(items=[[_t(step)] for step in p.steps[:30]]))
        if p.digest:
            blocks.append(
                Paragraph(
                    runs=[
                        _t("Plan digest: "),
                        _t(p.digest, code=True),
                        _t(" (what an approval runs; a plan that changed needs a new approval)."),
                    ]
                )
            )
    elif fix is not None and fix.kind != "none":
        target = fix.playbook if fix.kind == "playbook" else fix.repo
        blocks.append(
            Paragraph(
                runs=[_t(f"{fix.kind} fix" + (" for " if target else "")), _t(target or "", code=True)]
                + ([_t(f" (from {fix.source})")] if fix.source else [])
                + [_t(": " + fix.rationale if fix.rationale else ".")]
            )
        )
        if fix.patch:
            blocks.append(Code(text=fix.patch))
    else:
        blocks.append(Paragraph(runs=[_t("No fix proposed.")]))
    if view.decision is not None:
        d = view.decision
        blocks.append(
            Paragraph(
                runs=[
                    _t(
                        f"Decision: {d.decision.value} by {d.by} via {d.source}"
                        + (f": {d.comment}" if d.comment else "")
                    )
                ]
            )
        )
    elif view.outcome is None:
        blocks.append(
            Paragraph(
                runs=[
                    _t("To decide, comment "),
                    _t(
                        "/selfheal approve"
                        + (f" {view.proposal.digest[:12]}" if view.proposal and view.proposal.digest else ""),
                        code=True,
                    ),
                    _t(" or "),
                    _t("/selfheal reject", code=True),
                    _t(" on this ticket (optionally followed by a reason), or run "),
                    _t(f"selfheal approve|reject {view.id}", code=True),
                    _t(" with your own API token"),
                    _t("."),
                ]
            )
        )
    return blocks


def _remediations(view: IncidentView) -> list[Block]:
    blocks: list[Block] = [Heading(level=2, text="Remediation")]
    if not view.remediations:
        blocks.append(Paragraph(runs=[_t("No remediation ran.")]))
        return blocks
    rows = [
        [
            [_t(r.playbook, code=True)],
            [_t(r.outcome, bold=True)],
            [_t(r.reason[:300] or "-")],
            [_t(r.fix_commit[:12], code=True)] if r.fix_commit else [_t("-")],
            [_t(r.approved_by or "-")],
            [_t(f"{r.seconds:.1f}")],
        ]
        for r in view.remediations[-MAX_ROWS:]
    ]
    blocks.append(
        Table(header=["playbook", "outcome", "reason", "fix commit", "approved by", "seconds"], rows=rows)
    )
    return blocks


def _timeline(view: IncidentView) -> list[Block]:
    events = view.timeline[-MAX_TIMELINE:]
    blocks: list[Block] = [Heading(level=2, text="Timeline")]
    if len(view.timeline) > len(events):
        blocks.append(Paragraph(runs=[_t(f"The last {len(events)} of {len(view.timeline)} events.")]))
    rows = [[[_t(_when(ev.at))], [_t(ev.kind, code=True)], [_t(ev.message[:500])]] for ev in events]
    blocks.append(Table(header=["time", "event", "message"], rows=rows, trim=1))
    return blocks


def build_page(view: IncidentView, workflow_url: str) -> Document:
    """The ticket's page, in order: summary, impact, evidence, suspect changes, similar incidents,
    investigation, the coding agent's draft, proposed fix (and how to decide), remediation, timeline."""
    blocks: list[Block] = [
        *_summary(view, workflow_url),
        *_impact(view),
        *_evidence(view),
        *_changes(view),
        *_similar(view),
        *_investigation(view),
        *_coding(view),
        *_proposed_fix(view),
        *_remediations(view),
        *_timeline(view),
    ]
    return Document(blocks=blocks)
