"""`selfheal playbooks …`: lint playbooks, and show which one an alert would run and how.

Nothing here executes a step: `match` and `plan` only render. Registered in `selfheal/cli.py` with
`app.add_typer(playbooks_app, name="playbooks")`. A bad ALERT.json exits 2 with one line; invalid
playbooks make `lint` exit 1 and `match`/`plan` exit 2 (they cannot run without valid playbooks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from models.incident import AlertmanagerWebhook
from models.plan import MatchResult, PlannedStep, RemediationPlan
from playbooks.loader import PlaybookError, check_paths, default_paths, load_playbooks
from playbooks.matcher import PlaybookSet
from playbooks.schema import CONTROL, format_duration
from selfheal.cli_common import fail, settings_or_exit
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
    settings = _settings()
    configured, include, repos = _configured(settings)
    try:
        playbooks = load_playbooks(
            [*configured, *(dirs or [])],
            include_library=include and not no_library,
            known_repos=repos,
            kube_namespaces=settings.kube.namespaces if settings.kube else None,
        )
    except PlaybookError as exc:
        for error in exc.errors:
            typer.echo(error, err=True)
        raise typer.Exit(2) from exc
    return playbooks, settings.remediation.template_settings(settings.public_url)


def _match_all(alert_file: Path, dirs: list[Path] | None, no_library: bool) -> list[MatchResult]:
    webhook = _read_webhook(alert_file)
    playbooks, settings_ctx = _load(dirs, no_library)
    return [playbooks.match(alert, settings_ctx=settings_ctx) for alert in webhook.alerts]


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
            params = " ".join(f"{k}={v}" for k, v in r.params.items())
            typer.echo(f"{head} {r.playbook} (mode {r.mode}){' ' + params if params else ''}")
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
    results = _match_all(alert_file, dirs, no_library)
    if as_json:
        alerts = [
            {
                "fingerprint": r.fingerprint,
                "playbook": r.playbook,
                "reasons": r.reasons,
                "plan": r.plan.model_dump(mode="json") if r.plan else None,
            }
            for r in results
        ]
        typer.echo(json.dumps({"alerts": alerts}, indent=2, ensure_ascii=False))
    else:
        for i, r in enumerate(results):
            if i:
                typer.echo("")
            _print_result(r)
    if not any(r.plan for r in results):
        raise typer.Exit(1)


def _print_result(r: MatchResult) -> None:
    head = f"alert {_safe(r.fingerprint)} ({_safe(r.alertname)})"
    if r.plan is None:
        typer.echo(f"{head}: no playbook applies")
        for reason in r.reasons:
            typer.echo(f"  - {reason}")
        return
    p = r.plan
    typer.echo(f"{head}: playbook {p.playbook} (digest {p.playbook_digest})")
    typer.echo(f"  {p.description}")
    typer.echo(f"  target: {p.target}    repo: {p.repo or '-'}    category: {p.category or '-'}")
    typer.echo(f"  params: {', '.join(f'{k}={v}' for k, v in p.params.items()) or '-'}")
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
    if r.reasons:
        typer.echo("  notes:")
        for reason in r.reasons:
            typer.echo(f"    - {reason}")


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
