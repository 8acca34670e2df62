"""The `selfheal` command line.

`dev`, `api` and `worker` run the processes; `incidents`, `approve`, `reject` and the `mcp` server
are clients of the HTTP API, so approver policy is enforced in one place. Bad configuration or usage exits 2
with one line naming the field.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfheal.cli_common import State, err, fail, out, settings_or_exit
from selfheal.playbooks_cli import playbooks_app
from selfheal.settings import ConfigError

app = typer.Typer(
    name="selfheal",
    help="Self-healing incident loop: Alertmanager → durable Temporal workflow → ticket → human decision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
incidents_app = typer.Typer(help="Inspect incidents.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
token_app = typer.Typer(help="API tokens for people (auth.users).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(playbooks_app, name="playbooks")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="SELFHEAL_CONFIG", help="YAML settings file.")
]


@app.callback()
def root(config: ConfigOpt = None) -> None:
    State.config = config


@app.command()
def dev(
    data_dir: Annotated[
        Path, typer.Option(help="Where Temporal's SQLite file, tickets and logs live.")
    ] = Path(".selfheal"),
    port: Annotated[int, typer.Option(help="HTTP API port.")] = 8080,
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port.")] = 8233,
) -> None:
    """Run the embedded stack: Temporal dev server (SQLite), worker and API, supervised."""
    from devstack.stack import run_dev

    settings_or_exit()  # validate the config before starting anything
    raise typer.Exit(run_dev(data_dir, port, temporal_port, ui_port, State.config))


@app.command()
def api() -> None:
    """Run the HTTP API against the configured Temporal."""
    import uvicorn

    from selfheal.api import create_app
    from selfheal.clients import build_tracker
    from selfheal.logs import configure_logging

    settings = settings_or_exit()
    if settings.webhook_token is None:
        raise fail(
            "settings: webhook_token: required (set SELFHEAL_WEBHOOK_TOKEN); refusing to run unauthenticated"
        )
    configure_logging(settings, component="api")
    try:
        # The Jira deployment is checked now, as the worker does: a contradicting setting refuses.
        tracker = build_tracker(settings) if settings.tracker.kind == "jira" else None
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    if not settings.auth.users and settings.auth.oidc is None:
        err.print(
            "warning: no auth.users and no auth.oidc: only Alertmanager can call this API"
            " (selfheal token create NAME --role approver)",
            markup=False,
            highlight=False,
        )
    uvicorn.run(
        create_app(settings, tracker=tracker),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker() -> None:
    """Run the Temporal worker (incident workflows and ticket activities)."""
    from selfheal.logs import configure_logging
    from selfheal.worker import run_worker

    settings = settings_or_exit()
    configure_logging(settings, component="worker")
    try:
        asyncio.run(run_worker(settings))
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Exit without interpreter finalisation: the Temporal core's threads can abort it
    (temporalio/sdk-python#300), turning a clean stop into exit -6."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- API clients --------------------------------------------------------------------------------

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="SELFHEAL_URL", help="selfheal API base URL.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client(url: str | None) -> httpx.Client:
    """The API as a person: the user's API token from SELFHEAL_API_TOKEN or <data_dir>/api-token
    (never the webhook token, which only posts alerts)."""
    settings = settings_or_exit()
    base = url or settings.public_url or f"http://{settings.host}:{settings.port}"
    token = os.environ.get("SELFHEAL_API_TOKEN", "").strip()
    token_file = settings.data_dir / "api-token"
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    if not token:
        raise fail(
            f"SELFHEAL_API_TOKEN: not set and no {token_file}"
            " (selfheal token create NAME prints a token and its auth.users line)"
        )
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _call(url: str | None, method: str, path: str, **kwargs: Any) -> Any:
    with _client(url) as client:
        try:
            resp = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the selfheal API at {client.base_url}: {exc}", 1) from exc
    if resp.status_code >= 400:
        try:
            message = resp.json().get("error") or resp.text
        except ValueError:
            message = resp.text
        raise fail(f"{resp.status_code}: {message}", 1)
    return resp.json()


@incidents_app.command("list")
def incidents_list(
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    status: Annotated[str | None, typer.Option(help="firing | resolved")] = None,
    stage: Annotated[str | None, typer.Option()] = None,
    service: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Incidents, newest first."""
    params = {k: v for k, v in {"status": status, "stage": stage, "service": service}.items() if v}
    data = _call(url, "GET", "/api/v1/incidents", params=params)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("id", "stage", "status", "outcome", "service", "alertname", "ticket", "opened")
    for inc in data["incidents"]:
        table.add_row(
            inc["id"],
            inc["stage"],
            inc["status"],
            inc.get("outcome") or "",
            inc.get("service") or "",
            inc.get("alertname") or "",
            inc.get("ticket_key") or "",
            (inc.get("opened_at") or "")[:19],
        )
    out.print(table)


PageOpt = Annotated[bool, typer.Option("--page", help="Print the incident's ticket page as rendered.")]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="Page format: markdown (local tracker), wiki (Jira REST v2) or adf (Jira REST v3)."
    ),
]


@incidents_app.command("show")
def incidents_show(
    incident_id: str,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    page: PageOpt = False,
    fmt: FormatOpt = "markdown",
) -> None:
    """One incident: stage, alerts, ticket and timeline; with --page, its ticket page."""
    if fmt not in ("markdown", "wiki", "adf"):
        raise fail(f"--format: {fmt!r} is not one of markdown, wiki, adf")
    data = _call(url, "GET", f"/api/v1/incidents/{incident_id}")
    if page:
        print(_render_page(data, fmt))
        return
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print_incident(data)


def _render_page(data: dict[str, Any], fmt: str) -> str:
    """The page exactly as the ticket activities build and render it (same builder, same cap)."""
    from models.incident import IncidentView
    from pages.render import render
    from pages.ticket import build_page

    settings = settings_or_exit()
    view = IncidentView.model_validate(data)
    ui = settings.temporal.ui_url.rstrip("/")
    workflow_url = f"{ui}/namespaces/{settings.temporal.namespace}/workflows/{view.id}" if ui else ""
    text = render(build_page(view, workflow_url), fmt)  # type: ignore[arg-type]
    return json.dumps(json.loads(text), indent=2) if fmt == "adf" else text


def print_incident(data: dict[str, Any], console: Console = out) -> None:
    ticket = data.get("ticket") or {}
    console.print(f"[bold]{escape(data['id'])}[/]  {escape(data.get('title', ''))}", highlight=False)
    console.print(
        f"stage [cyan]{data['stage']}[/]  status {data['status']}  outcome {data.get('outcome') or '-'}"
        f"  ticket {ticket.get('key', '-')} {ticket.get('url', '')}",
        highlight=False,
    )
    alerts = Table("fingerprint", "status", "alert", title="alerts")
    for a in data.get("alerts", []):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        alerts.add_row(a["fingerprint"], a["status"], labels)
    console.print(alerts)
    timeline = Table("at", "event", "message", title="timeline")
    for ev in data.get("timeline", []):
        timeline.add_row(ev["at"][:23], ev["kind"], ev["message"])
    console.print(timeline)


def _decide(
    kind: str, incident_id: str, user: str | None, comment: str, url: str | None, digest: str | None = None
) -> None:
    body: dict[str, str] = {"decision": kind, "comment": comment}
    if user:
        body["by"] = user
    if digest:
        body["plan_digest"] = digest
    data = _call(url, "POST", f"/api/v1/incidents/{incident_id}/decision", json=body)
    by = (data.get("decision") or {}).get("by") or user or "you"
    out.print(f"{incident_id}: {kind} by {by} accepted by the incident", highlight=False)


AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Optional check: refused unless it is the user your token authenticates."),
]
CommentOpt = Annotated[str, typer.Option("--comment", help="Why.")]


def _proposal(url: str | None, incident_id: str) -> dict[str, Any]:
    """The incident's current proposal ({} when there is none or it cannot be read: the decision
    itself then says what is wrong, e.g. 403 or 404)."""
    with _client(url) as client:
        try:
            resp = client.get(f"/api/v1/incidents/{incident_id}")
        except httpx.HTTPError:
            return {}
    if resp.status_code != 200:
        return {}
    proposal: dict[str, Any] = resp.json().get("proposal") or {}
    return proposal


DigestOpt = Annotated[
    str | None,
    typer.Option(
        "--digest",
        help="The plan you approve (its digest, or 8+ leading hex digits); default: the plan shown now."
        " A plan that changed since is refused.",
    ),
]


@app.command()
def approve(
    incident_id: str,
    as_user: AsOpt = None,
    comment: CommentOpt = "",
    url: UrlOpt = None,
    digest: DigestOpt = None,
) -> None:
    """Approve an escalated incident's proposal (acknowledge when nothing is proposed), as yourself.

    The plan is shown first and its digest sent with the approval, so what runs is what you saw."""
    if digest is None:
        proposal = _proposal(url, incident_id)
        digest = proposal.get("digest") or None
        if digest:
            out.print(f"plan {digest} on {proposal.get('target', '')}:", highlight=False)
            for i, step in enumerate(proposal.get("steps", []), 1):
                out.print(f"  {i}. {step}", highlight=False, markup=False)
    _decide("approve", incident_id, as_user, comment, url, digest)


@app.command()
def reject(incident_id: str, as_user: AsOpt = None, comment: CommentOpt = "", url: UrlOpt = None) -> None:
    """Reject, as yourself: humans own the incident from here."""
    _decide("reject", incident_id, as_user, comment, url)


def _pause(paused: bool, user: str | None, reason: str, url: str | None) -> None:
    body: dict[str, str] = {"reason": reason}
    if user:
        body["by"] = user
    data = _call(url, "POST", f"/api/v1/remediation/{'pause' if paused else 'resume'}", json=body)
    state = "paused" if data["paused"] else "running"
    out.print(f"autonomous remediation {state} (by {data['paused_by']})", highlight=False)


@app.command()
def pause(as_user: AsOpt = None, reason: CommentOpt = "", url: UrlOpt = None) -> None:
    """Stop autonomous remediation globally (approvers): every playbook match is escalated instead."""
    _pause(True, as_user, reason, url)


@app.command()
def resume(as_user: AsOpt = None, reason: CommentOpt = "", url: UrlOpt = None) -> None:
    """Restart autonomous remediation (approvers)."""
    _pause(False, as_user, reason, url)


@app.command()
def mcp(
    url: Annotated[
        str, typer.Option("--url", envvar="SELFHEAL_URL", help="selfheal API base URL.")
    ] = "http://127.0.0.1:8080",
) -> None:
    """Serve MCP over stdio for a coding agent, acting through the API as the owner of SELFHEAL_TOKEN.

    Every tool is an API call with that token, so the API's rules apply (viewers read, approvers
    decide). Configure it as an MCP server command in your agent; see docs/mcp.md."""
    from selfheal.mcp_server.stdio import serve_stdio

    # SELFHEAL_API_TOKEN is what the other API commands read: one variable serves both.
    token = (os.environ.get("SELFHEAL_TOKEN") or os.environ.get("SELFHEAL_API_TOKEN") or "").strip()
    if not token:
        raise fail(
            "SELFHEAL_TOKEN: not set; give it your personal API token"
            " (selfheal token create NAME prints one), never the webhook token"
        )
    if not url.startswith(("http://", "https://")):
        raise fail(f"SELFHEAL_URL: {url!r} is not an http(s) URL")
    asyncio.run(serve_stdio(url.rstrip("/"), token))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The user's name in auth.users.")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="viewer, approver or admin (repeatable; default viewer)."),
    ] = None,
) -> None:
    """Print a new API token (shown once; keep it secret) and the auth.users line to paste."""
    from selfheal.auth import USER_NAME, new_token, token_sha256

    roles = role or ["viewer"]
    if not USER_NAME.match(name):
        raise fail(f"NAME: {name!r}: letters, digits and _.@- only, at most 100")
    bad = [r for r in roles if r not in ("viewer", "approver", "admin")]
    if bad:
        raise fail(f"--role: {bad[0]!r} is not one of viewer, approver, admin")
    token = new_token()
    print(f"token: {token}")
    print("# add to the config (under an existing auth.users, the last line only); the token is not stored")
    print("auth:\n  users:")
    print(f'    {name}: {{roles: [{", ".join(roles)}], token_sha256: "{token_sha256(token)}"}}')


@app.command()
def demo(
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the demo's data and logs here (default: a temp dir).")
    ] = None,
    interactive: Annotated[
        bool, typer.Option(help="Leave the novel incident's decision to you (selfheal approve/reject).")
    ] = False,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only this scenario (repeatable): bad-config, pool-regression, feature-flag, novel."
        ),
    ] = None,
    ticket_dir: Annotated[
        Path, typer.Option(help="Where the final ticket page of one incident is saved.")
    ] = Path(".selfheal-demo"),
) -> None:
    """The real loop on a real service: faults in a shop healed via Prometheus, Alertmanager and Temporal."""
    from demo.runner import run_demo

    raise typer.Exit(run_demo(data_dir, interactive=interactive, scenarios=scenario, ticket_dir=ticket_dir))


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
