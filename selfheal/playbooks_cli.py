"""`selfheal playbooks …`: lint playbooks, and show which one an alert would run and how.

Nothing here executes a step: `match` and `plan` only render. Registered in `selfheal/cli.py` with
`app.add_typer(playbooks_app, name="playbooks")`. A bad ALERT.json exits 2 with one line; invalid
playbooks make `lint` exit 1 and `match`/`plan` exit 2 (they cannot run without valid playbooks).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from models.incident import AlertmanagerWebhook
from models.plan import MatchResult, PlannedCheck, PlannedStep, RemediationPlan
from pages.redact import cap, redact
from playbooks.coverage import (
    TOP_REASONS,
    Count,
    Coverage,
    Episodes,
    InputError,
    Row,
    collect_episodes,
    count_coverage,
    read_bodies,
    share,
)
from playbooks.loader import PlaybookError, check_paths, default_paths
from playbooks.matcher import PlaybookSet
from playbooks.schema import CONTROL, format_duration, show
from selfheal.cli_common import fail, settings_or_exit
from selfheal.playbook_match import load_configured
from selfheal.settings import Settings

playbooks_app = typer.Typer(
    help="SRE playbooks: lint them, and see which one an alert would run (nothing is executed).",
    no_args_is_help=True,
)

DirOpt = Annotated[
    list[Path] | None, typer.Option("--dir", help="Also load playbooks from this directory (repeatable).")
]
NoLibraryOpt = Annotated[bool, typer.Option("--no-library", help="Leave out the shipped playbook library.")]
AlertArg = Annotated[Path, typer.Argument(metavar="ALERT.json", help="An Alertmanager webhook body.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _settings() -> Settings:
    return settings_or_exit()


def _configured(settings: Settings) -> tuple[list[Path], bool, list[str]]:
    """Playbook dirs, the library switch and the repo names from `remediation` settings."""
    section = settings.remediation
    return list(section.playbook_dirs), section.include_library, list(section.repos)


def _read_webhook(path: Path) -> AlertmanagerWebhook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    try:
        return AlertmanagerWebhook.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise fail(f"{path}: not an Alertmanager webhook: {where}: {first['msg']}") from exc


def _load(dirs: list[Path] | None, no_library: bool) -> tuple[PlaybookSet, dict[str, str]]:
    """Load as the worker does: configured dirs, the library, and repo names checked."""
    try:
        return load_configured(_settings(), dirs or [], library=not no_library)
    except PlaybookError as exc:
        for error in exc.errors:
            typer.echo(error, err=True)
        raise typer.Exit(2) from exc


def _match_all(alert_file: Path, dirs: list[Path] | None, no_library: bool) -> list[MatchResult]:
    webhook = _read_webhook(alert_file)
    playbooks, settings_ctx = _load(dirs, no_library)
    return [playbooks.match(alert, settings_ctx=settings_ctx) for alert in webhook.alerts]


def _candidate_plans(
    alert_file: Path, dirs: list[Path] | None, no_library: bool
) -> list[tuple[MatchResult, list[RemediationPlan | None]]]:
    """Each alert's match with a plan per candidate, in precedence order; a candidate whose params
    come from a query is previewed with `<name>` in their place (None if that cannot render)."""
    webhook = _read_webhook(alert_file)
    playbooks, settings_ctx = _load(dirs, no_library)
    out = []
    for alert in webhook.alerts:
        r = playbooks.match(alert, settings_ctx=settings_ctx)
        plans = [c.plan or playbooks.preview(c, alert, settings_ctx=settings_ctx) for c in r.candidates()]
        out.append((r, plans))
    return out


def _shown_params(params: dict[str, str], deferred: list[str]) -> str:
    shown = [*(f"{k}={v}" for k, v in params.items()), *(f"{k}=(resolved at run time)" for k in deferred)]
    return " ".join(shown)


def _safe(text: str) -> str:
    """Alert-supplied text for the terminal: no control characters."""
    return CONTROL.sub("?", text)


@playbooks_app.command("lint")
def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[PATH]...", help="Playbook files or directories (default: library + configured)."
        ),
    ] = None,
    dirs: DirOpt = None,
    no_library: NoLibraryOpt = False,
) -> None:
    """Validate playbooks: schema, templates, params, duplicate names and precedence ties.

    When settings configure `remediation.repos`, each `repo:` must name one of them.
    """
    settings = _settings()
    configured, include, repos = _configured(settings)
    if paths:
        targets = [*paths, *(dirs or [])]
    else:
        targets = default_paths([*configured, *(dirs or [])], include and not no_library)
    namespaces = settings.kube.namespaces if settings.kube else None
    report = check_paths(targets, known_repos=repos or None, kube_namespaces=namespaces)
    if report.errors:
        for error in report.errors:
            typer.echo(error)
        raise typer.Exit(1)
    typer.echo(f"{len(report.playbooks)} playbooks OK")


@playbooks_app.command("match")
def match(
    alert_file: AlertArg,
    as_json: JsonOpt = False,
    dirs: DirOpt = None,
    no_library: NoLibraryOpt = False,
) -> None:
    """For each alert in an Alertmanager webhook body: the playbook that applies, or why none does."""
    results = _match_all(alert_file, dirs, no_library)
    if as_json:
        alerts = [
            {
                "fingerprint": r.fingerprint,
                "playbook": r.playbook,
                "mode": r.mode,
                "params": r.params,
                "deferred": r.deferred,
                "alternatives": [
                    {"playbook": c.playbook, "mode": c.mode, "params": c.params, "deferred": c.deferred}
                    for c in r.alternatives
                ],
                "reasons": r.reasons,
            }
            for r in results
        ]
        typer.echo(json.dumps({"alerts": alerts}, indent=2, ensure_ascii=False))
        return
    for r in results:
        head = f"{_safe(r.fingerprint)} {_safe(r.alertname)}:"
        if r.playbook is None:
            typer.echo(f"{head} no playbook applies")
        else:
            params = _shown_params(r.params, r.deferred)
            typer.echo(f"{head} {r.playbook} (mode {r.mode}){' ' + params if params else ''}")
        for i, c in enumerate(r.alternatives, 1):
            params = _shown_params(c.params, c.deferred)
            typer.echo(f"  alternative {i}: {c.playbook} (mode {c.mode}){' ' + params if params else ''}")
        for reason in r.reasons:
            typer.echo(f"    {reason}")


@playbooks_app.command("plan")
def plan(
    alert_file: AlertArg,
    as_json: JsonOpt = False,
    dirs: DirOpt = None,
    no_library: NoLibraryOpt = False,
) -> None:
    """Print the fully rendered steps each alert's playbook would run; touches nothing.

    Exits 1 when no playbook applies to any alert.
    """
    results = _candidate_plans(alert_file, dirs, no_library)
    if as_json:
        alerts = [
            {
                "fingerprint": r.fingerprint,
                "playbook": r.playbook,
                "reasons": r.reasons,
                "plan": r.plan.model_dump(mode="json") if r.plan else None,
                "deferred": r.deferred,
                "alternatives": [
                    {
                        "playbook": c.playbook,
                        "deferred": c.deferred,
                        "plan": c.plan.model_dump(mode="json") if c.plan else None,
                    }
                    for c in r.alternatives
                ],
            }
            for r, _ in results
        ]
        typer.echo(json.dumps({"alerts": alerts}, indent=2, ensure_ascii=False))
    else:
        for i, (r, plans) in enumerate(results):
            if i:
                typer.echo("")
            _print_result(r, plans)
    if not any(r.playbook for r, _ in results):
        raise typer.Exit(1)


def _print_result(r: MatchResult, plans: list[RemediationPlan | None]) -> None:
    head = f"alert {_safe(r.fingerprint)} ({_safe(r.alertname)})"
    candidates = r.candidates()
    if not candidates:
        typer.echo(f"{head}: no playbook applies")
        for reason in r.reasons:
            typer.echo(f"  - {reason}")
        return
    for i, (c, p) in enumerate(zip(candidates, plans, strict=True)):
        if i:
            before = ", ".join(x.playbook for x in candidates[:i])
            head = f"  alternative {i}, tried if diagnose rules out {before}"
        typer.echo(f"{head}: playbook {c.playbook} (digest {c.digest})")
        if c.deferred:
            typer.echo(f"  resolved at run time from Prometheus: {', '.join(c.deferred)}")
        if p is None:
            typer.echo("  (its steps render once those params are resolved)")
        else:
            _print_plan(p, c.deferred)
    if r.reasons:
        typer.echo("  notes:")
        for reason in r.reasons:
            typer.echo(f"    - {reason}")


def _print_plan(p: RemediationPlan, deferred: list[str]) -> None:
    """One candidate's rendered steps; a run-time param shows as `<name>` (a preview)."""
    typer.echo(f"  {p.description}")
    typer.echo(f"  target: {p.target}    repo: {p.repo or '-'}    category: {p.category or '-'}")
    params = [f"{k}={v}" if k not in deferred else f"{k}=(resolved at run time)" for k, v in p.params.items()]
    typer.echo(f"  params: {', '.join(params) or '-'}")
    typer.echo(f"  policy: {_policy(p)}")
    typer.echo("  diagnose:" + ("" if p.diagnose else " -"))
    for check in p.diagnose:
        typer.echo(f"    - {check.name}: {check.query} {check.condition}")
    for phase, steps in (("fix", p.fix), ("test", p.test), ("deploy", p.deploy)):
        _print_steps(phase, steps)
    if p.verify is None:
        typer.echo("  verify: -")
    else:
        v = p.verify
        resolved = ", and the alert resolved" if v.alert_resolved else ""
        typer.echo(
            f"  verify: {v.query} {v.condition} held for {format_duration(v.hold_for_seconds)}"
            f" within {format_duration(v.timeout_seconds)}{resolved}"
        )
    if isinstance(p.rollback, str):
        what = "revert the fix commit and redeploy" if p.repo else "nothing was committed, nothing to revert"
        typer.echo(f"  rollback: auto ({what})")
    else:
        _print_steps("rollback", p.rollback)


def _policy(p: RemediationPlan) -> str:
    pol = p.policy
    firing = ", only while firing" if pol.require_firing else ""
    return (
        f"mode {pol.mode}, at most {pol.max_runs} run(s) per {format_duration(pol.window_seconds)},"
        f" cooldown {format_duration(pol.cooldown_seconds)}{firing}"
    )


def _print_steps(phase: str, steps: list[PlannedStep]) -> None:
    typer.echo(f"  {phase}:" + ("" if steps else " -"))
    for step in steps:
        action: dict[str, Any] = step.action.model_dump(mode="json")
        typer.echo(f"    [{step.index}] {step.description}")
        typer.echo(f"        {json.dumps(action, ensure_ascii=False)}")


# ------------------------------------------------------------------------------------ coverage

FilesArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="FILE...",
        help="Stored webhook bodies: one JSON body, a JSON array of them, or JSONL; - reads stdin.",
    ),
]
PlaybookDirsOpt = Annotated[
    list[Path] | None,
    typer.Option("--playbooks", "--dir", help="Also load playbooks from this directory (repeatable)."),
]
PrometheusOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus",
        metavar="URL",
        help="Run each fixing playbook's diagnose checks here, at the episode's start"
        " (default: remediation.prometheus_url).",
    ),
]
#: The shares the final line gives, with their labels there.
_SHARES: tuple[tuple[Count, str], ...] = (
    ("fixable", "fixable"),
    ("suggest_only", "suggest-only"),
    ("unmatched", "unmatched"),
)
NoDiagnoseOpt = Annotated[
    bool, typer.Option("--no-diagnose", help="Do not run diagnose checks, even with a Prometheus configured.")
]


@playbooks_app.command("coverage")
def coverage(
    files: FilesArg,
    as_json: JsonOpt = False,
    dirs: PlaybookDirsOpt = None,
    no_library: NoLibraryOpt = False,
    prometheus: PrometheusOpt = None,
    no_diagnose: NoDiagnoseOpt = False,
) -> None:
    """Of the alert episodes in stored webhook bodies: how many a playbook fixes, only suggests, or misses.

    An episode is one (fingerprint, startsAt), however often it was re-sent. Nothing is executed;
    with a Prometheus, diagnose checks are evaluated at each episode's start (read-only queries).
    """
    found = collect_episodes(body for path in files for _, body in _read_bodies(path))
    playbooks, settings_ctx = _load(dirs, no_library)
    url = None if no_diagnose else (prometheus or _settings().remediation.prometheus_url)
    diagnose: _Diagnose | None = None
    if url:
        diagnose = _Diagnose(url)
    try:
        result = count_coverage(
            found.episodes,
            playbooks,
            settings_ctx=settings_ctx,
            check_at=diagnose.check_at if diagnose else None,
        )
    finally:
        if diagnose:
            diagnose.close()
    handled = {p.spec.match.alertname for p in playbooks} | {
        p.spec.match.alertname for p, _ in playbooks.skipped
    }
    if as_json:
        typer.echo(json.dumps(_coverage_json(found, result, diagnose), indent=2, ensure_ascii=False))
    else:
        _print_coverage(found, result, diagnose, handled)


def _read_bodies(path: Path) -> list[tuple[int, AlertmanagerWebhook]]:
    """The bodies of one FILE (`-`: stdin); bad input exits 2 naming the file, line and field."""
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise fail(f"{name}: not UTF-8 text") from exc
    try:
        return read_bodies(text)
    except InputError as exc:
        raise fail(f"{name}:{exc.line}: {exc.message}") from exc


class _Diagnose:
    """Diagnose checks against the playbooks' Prometheus, evaluated at a given moment (its
    retention permitting); each distinct (query, condition, moment) is asked once."""

    def __init__(self, url: str) -> None:
        from connectors.prometheus import PrometheusClient
        from selfheal.clients import PLAYBOOK_HTTP_TIMEOUT

        self.url = url
        self.client = PrometheusClient(url, timeout=PLAYBOOK_HTTP_TIMEOUT)
        if not self.client.healthy():
            self.client.close()
            raise fail(
                f"diagnose: Prometheus at {redact(url)} is not ready (/-/ready);"
                " pass --no-diagnose to count without it"
            )
        self.errors = 0
        self.first_error: str | None = None
        self._seen: dict[tuple[str, str, datetime], bool | None] = {}

    def check_at(self, check: PlannedCheck, at: datetime) -> bool | None:
        key = (check.query, check.condition, at)
        if key not in self._seen:
            self._seen[key] = self._run(check, at)
        return self._seen[key]

    def _run(self, check: PlannedCheck, at: datetime) -> bool | None:
        from connectors.prometheus import PrometheusError

        try:
            values = self.client.query(check.query, at=at)
            return self.client.check(check.condition, values) if values else None
        except PrometheusError as err:
            self.errors += 1
            self.first_error = self.first_error or cap(redact(str(err)), 300)
            return None

    def close(self) -> None:
        self.client.close()


def _coverage_json(found: Episodes, result: Coverage, diagnose: _Diagnose | None) -> dict[str, Any]:
    total = result.total("episodes")
    summary: dict[str, Any] = {"episodes": total, "excluded": sum(r.episodes for r in result.rows) - total}
    for key, _ in _SHARES:
        summary[key] = result.total(key)
        summary[f"{key}_percent"] = share(result.total(key), total)
    diag: dict[str, Any] | None = None
    if diagnose is not None:
        diag = {
            "prometheus": redact(diagnose.url),
            "evaluated_at": "each episode's startsAt",
            **{v: result.diagnose_total(v) for v in ("confirmed", "ruled_out", "unknown", "no_checks")},
            "query_errors": diagnose.errors,
            "first_error": diagnose.first_error,
        }
    return {
        "input": {
            "bodies": found.bodies,
            "alerts": found.alerts,
            "episodes": len(found.episodes),
            "truncated_alerts": found.truncated,
        },
        "summary": summary,
        "diagnose": diag,
        "rows": [_row_json(r, result.diagnosed) for r in result.rows],
    }


def _row_json(row: Row, diagnosed: bool) -> dict[str, Any]:
    return {
        "alertname": row.alertname,
        "severity": row.severity,
        "excluded": row.excluded,
        "episodes": row.episodes,
        "fixable": row.fixable,
        "suggest_only": row.suggest_only,
        "unmatched": row.unmatched,
        "playbooks": dict(row.playbooks.most_common()),
        "unmatched_reasons": [
            {"reason": reason, "episodes": n} for reason, n in row.reasons.most_common(TOP_REASONS)
        ],
        "diagnose": {v: row.diagnose[v] for v in ("confirmed", "ruled_out", "unknown", "no_checks")}
        if diagnosed and not row.excluded
        else None,
    }


def _print_coverage(found: Episodes, result: Coverage, diagnose: _Diagnose | None, handled: set[str]) -> None:
    typer.echo(
        f"read {found.bodies} webhook bodies, {found.alerts} alerts:"
        f" {len(found.episodes)} episodes (fingerprint + startsAt)"
    )
    if found.truncated:
        typer.echo(
            f"note: Alertmanager truncated {found.truncated} alerts out of these bodies (max_alerts);"
            " they are not counted"
        )
    head = ["alertname", "severity", "episodes", "fixable"]
    head += ["confirmed"] if result.diagnosed else []
    head += ["suggest-only", "unmatched"]
    table: list[list[str]] = []
    for r in result.rows:
        cells = [_safe(r.alertname) or "-", _safe(r.severity) or "-", str(r.episodes)]
        if not r.excluded:
            cells += [str(r.fixable)]
            cells += [str(r.diagnose["confirmed"])] if result.diagnosed else []
            cells += [str(r.suggest_only), str(r.unmatched)]
        table.append(cells)
    widths = [max(len(c[i]) for c in [head, *table] if i < len(c)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        text = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(text).rstrip()

    typer.echo(line(head))
    for r, cells in zip(result.rows, table, strict=True):
        typer.echo(line(cells) + ("  (excluded)" if r.excluded else ""))
        if r.unmatched and r.alertname in handled:
            reason, n = r.reasons.most_common(1)[0]
            typer.echo(f"    most common reason nothing matched ({n}): {_safe(reason)}")
    if diagnose is not None:
        count = result.diagnose_total
        typer.echo(
            f"diagnose at each episode's start on {redact(diagnose.url)}, fixable episodes:"
            f" {count('confirmed')} confirmed, {count('ruled_out')} ruled out, {count('unknown')} unknown"
            f" (no data at that time or the query failed), {count('no_checks')} without checks"
        )
        if diagnose.first_error:
            typer.echo(f"    {diagnose.errors} queries failed; first: {_safe(diagnose.first_error)}")
    total = result.total("episodes")
    if not total:
        typer.echo("coverage: 0 episodes (Watchdog and InfoInhibitor are not counted)")
        return
    parts = [f"{share(result.total(key), total)}% {label} ({result.total(key)})" for key, label in _SHARES]
    typer.echo(f"coverage: {total} episodes, {', '.join(parts)}")


# --- draft ---------------------------------------------------------------------------------------

OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the playbook to this file instead of stdout.")
]


@playbooks_app.command("draft")
def draft(incident_id: str, output: OutputOpt = None) -> None:
    """The playbook drafted from an incident an approved fix healed (made as it closed), from the
    incident store. An unknown incident, or one not healed by an approved proposal, exits 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from connectors.incident_store import IncidentStore
    from models.incident import Outcome
    from playbooks.draft import PROPOSAL_PLAYBOOKS

    settings = _settings()
    shown = show(incident_id)
    try:
        store = IncidentStore(settings.store_url)
        try:
            row = store.get(incident_id)
            drafted = store.get_draft(incident_id)
        finally:
            store.close()
    except SQLAlchemyError as exc:
        raise fail(f"incident store: {redact(str(exc)).splitlines()[0][:300]}") from exc
    if row is None:
        raise fail(f"unknown incident {shown}: not in the incident store (still open, or never recorded)")
    healed = row.outcome == Outcome.HEALED_AFTER_APPROVAL.value and row.playbook in PROPOSAL_PLAYBOOKS
    if not healed:
        raise fail(
            f"incident {shown} was not healed by an approved proposed fix"
            f" (outcome {row.outcome or 'unknown'}, playbook {row.playbook or 'none'}): nothing to draft"
        )
    if drafted is None:
        raise fail(f"incident {shown}: no draft was recorded as it closed (see its timeline)", 1)
    if drafted.status != "proposed":
        raise fail(f"incident {shown}: no playbook drafted: {drafted.reasons.replace(chr(10), '; ')}", 1)
    if output is None:
        sys.stdout.write(drafted.yaml)
        return
    try:
        output.write_text(drafted.yaml, encoding="utf-8")
    except OSError as exc:
        raise fail(f"{output}: cannot write: {exc.strerror or exc}") from exc
    where = f", proposed as branch {drafted.branch}" if drafted.branch else ""
    typer.echo(f"{drafted.name} written to {output}{where}")
