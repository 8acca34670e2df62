"""`make demo` / `selfheal demo`: the real production loop, end to end, in a few minutes.

Starts a small shop whose config is deployed from git, a load generator, Prometheus (the shop's
SLO rules), Alertmanager (webhook → selfheal), Temporal, and selfheal's worker and API. Then it
pushes four faults, one at a time: three that playbooks heal with no human (revert a bad config
commit, raise a regressed pool size, switch off a broken feature flag) and one no playbook knows,
which is escalated with its evidence, investigation and proposed fix planned as a revert; the demo
approves that plan (by its digest) and selfheal applies, tests, deploys and verifies it. A live
timeline shows each stage; a final table shows the loop's latencies. Exit 0 only if every scenario
ended as expected.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

console = Console()

_KIND_STYLE = {
    "fault": "bold red",
    "prometheus": "yellow",
    "received": "bold cyan",
    "ticketed": "cyan",
    "evidence": "cyan",
    "investigated": "cyan",
    "playbook_matched": "magenta",
    "no_playbook": "magenta",
    "proposal_planned": "magenta",
    "proposal_refused": "bold red",
    "remediation_started": "magenta",
    "deploying": "magenta",
    "verifying": "magenta",
    "remediation_healed": "bold green",
    "playbook_drafted": "bold green",
    "playbook_draft_refused": "bold red",
    "closed": "bold green",
    "escalated": "bold yellow",
    "decision": "bold yellow",
    "human_fix": "yellow",
    "recovered": "green",
    "failed": "bold red",
    "step": "dim",
}


class Prerequisite(Exception):
    """Something the demo needs is missing and cannot be installed here (exit 2)."""


def ensure_binaries() -> None:
    """Install Prometheus and Alertmanager from Debian when missing (as root with apt-get)."""
    from demo.observability import ALERTMANAGER_BIN, PROMETHEUS_BIN

    wanted = {"prometheus": PROMETHEUS_BIN, "prometheus-alertmanager": ALERTMANAGER_BIN}
    missing = [pkg for pkg, path in wanted.items() if shutil.which(path) is None]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise Prerequisite(
            f"{' and '.join(missing)} missing: install them (`apt-get install {' '.join(missing)}`, as root)"
            " or set SELFHEAL_PROMETHEUS_BIN / SELFHEAL_ALERTMANAGER_BIN"
        )
    console.print(f"installing {' '.join(missing)} with apt-get…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *missing]):
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
        if res.returncode != 0:
            raise Prerequisite(f"{' '.join(argv[1:3])} failed: {(res.stderr or res.stdout).strip()[-300:]}")
    still = [pkg for pkg, path in wanted.items() if shutil.which(path) is None]
    if still:
        raise Prerequisite(f"{' and '.join(still)} still missing after apt-get install")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C does, so every child is cleaned up."""

    def on_signal(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}s"


def _event_printer(title: str) -> Any:
    def show(seconds: float, kind: str, message: str) -> None:
        style = _KIND_STYLE.get(kind, "")
        first = message.splitlines()[0] if message else ""
        line = Text(f"  +{seconds:6.2f}s  ", style="dim")
        line.append(f"{kind:<20}", style=style or None)
        line.append(first[:160], style="dim" if kind == "step" else None)
        console.print(line, soft_wrap=True)

    return show


def show_escalation(view: dict[str, Any]) -> None:
    """What the on-call sees: the evidence, the investigation and its proposed fix."""
    lines: list[str] = []
    sections = {s["source"]: s for s in (view.get("evidence") or {}).get("sections", [])}
    changes = sections.get("changes", {}).get("changes", [])
    if changes:
        top = changes[0]
        lines.append(f"suspect change: {top['repo']}@{top['sha'][:10]} {top['summary']!r} by {top['author']}")
    figures = sections.get("affected_users", {}).get("figures", {})
    if figures:
        lines.append(f"affected users: {int(next(iter(figures.values())))}")
    similar = sections.get("similar_incidents", {}).get("similar", [])
    for s in similar[:2]:
        lines.append(
            f"similar incident: {s['incident_id']} ({s['outcome']}) {s['title'][:80]} — fix: {s['fix'][:80]}"
        )
    inv = view.get("investigation")
    if inv:
        lines.append("")
        lines.append(f"investigation ({inv['investigator']}): {inv['summary'][:400]}")
        for h in inv.get("hypotheses", [])[:3]:
            lines.append(f"  • {h['title'][:140]} (confidence {h['confidence']:.2f})")
        fix = inv.get("proposed_fix")
        if fix:
            lines.append(f"proposed fix ({fix['kind']}): {fix.get('rationale', '')[:300]}")
    else:
        lines.append("(no investigation on this incident)")
    proposal = view.get("proposal")
    if proposal:
        lines.append("")
        lines.append(f"plan {proposal['digest'][:12]} on {proposal['target']} ({proposal['mode']}):")
        lines += [f"  {i}. {step[:140]}" for i, step in enumerate(proposal.get("steps", []), 1)]
    console.print(Panel(Text("\n".join(lines)), title=f"escalated: {view['title'][:90]}", expand=False))


def save_ticket(stack: Any, runner: Any, key: str, out_dir: Path) -> Path:
    """The ticket's final page, comments and attachments (graphs, a drafted playbook), as files the
    README can show."""
    ticket = runner.ticket(key)
    out_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(stack.data_dir / "tickets.db") as db:
        rows = db.execute(
            "SELECT a.filename, a.data FROM attachments a WHERE a.ticket_n = ? ORDER BY a.id",
            (int(key.rsplit("-", 1)[1]),),
        ).fetchall()
    for filename, data in rows:
        (out_dir / Path(filename).name).write_bytes(data)
    parts = [
        f"# {ticket['key']}: {ticket['summary']}",
        f"priority {ticket['priority']} · status {ticket['status']} · labels {', '.join(ticket['labels'])}",
        "",
        ticket["description"],
        "",
        "## Comments",
    ]
    for c in ticket["comments"]:
        parts += ["", f"**{c['author']}** ({c['created']}):", "", c["body"]]
    if rows:
        parts += ["", "## Attachments", ""] + [
            f"[{name}]({Path(name).name})" if name.endswith(".yaml") else f"![{name}]({Path(name).name})"
            for name, _ in rows
        ]
    path = out_dir / f"{key}.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def drafted_playbooks(stack: Any, key: str) -> list[tuple[str, bytes]]:
    """The playbooks selfheal drafted onto the ticket (`<name>.yaml` attachments)."""
    with sqlite3.connect(stack.data_dir / "tickets.db") as db:
        rows = db.execute(
            "SELECT filename, data FROM attachments"
            " WHERE ticket_n = ? AND filename LIKE '%.yaml' ORDER BY id",
            (int(key.rsplit("-", 1)[1]),),
        ).fetchall()
    return [(str(name), bytes(data)) for name, data in rows]


def run_demo(
    data_dir: Path | None,
    *,
    interactive: bool = False,
    scenarios: list[str] | None = None,
    ticket_dir: Path = Path(".selfheal-demo"),
) -> int:
    try:
        ensure_binaries()
        from devstack.temporal_server import find_temporal_cli

        find_temporal_cli()
    except Exception as err:
        console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        return 2

    from demo.scenarios import ORDER, SCENARIOS, Runner, ScenarioResult
    from demo.stack import DemoStack

    keys = scenarios or ORDER
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        console.print(f"error: unknown scenario {unknown[0]!r} (known: {', '.join(ORDER)})", markup=False)
        return 2
    own_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="selfheal-demo-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    stack = DemoStack(root)
    results: list[ScenarioResult] = []
    t0 = time.monotonic()
    code = 1
    with _terminate_as_interrupt():
        try:
            console.print(Panel("selfheal demo: the real loop on a real (small) service", expand=False))
            stack.start(lambda text: console.print(f"[dim]{time.monotonic() - t0:6.2f}s[/]  {text}"))
            runner = Runner(stack)
            for key in keys:
                scenario = SCENARIOS[key]
                console.rule(f"[bold]{scenario.title}[/]")
                runner.on_event = _event_printer(scenario.title)

                def decide(view: dict[str, Any], scenario_key: str = key) -> None:
                    show_escalation(view)
                    if interactive:
                        _wait_for_human(stack, runner, view)
                        return
                    fix = ((view.get("investigation") or {}).get("proposed_fix") or {}).get("rationale", "")
                    digest = (view.get("proposal") or {}).get("digest")
                    runner.decide(
                        view["id"],
                        "approve",
                        f"Approved by the demo's on-call: {fix or 'the proposed fix'}",
                        plan_digest=digest,
                    )

                results.append(runner.run(scenario, decide, timeout=900 if interactive else 120))
            table = Table(title="selfheal demo: the loop, measured")
            for col in ("scenario", "outcome", "ticket"):
                table.add_column(col, no_wrap=True)
            for col in ("fault → alert", "alert → fix deployed", "fault → verified", "ok"):
                table.add_column(col, justify="right")
            for r in results:
                table.add_row(
                    r.scenario,
                    r.outcome or "—",
                    r.ticket_key or "—",
                    _fmt(r.seconds("fault_at", "alert_at")),
                    _fmt(r.seconds("alert_at", "deployed_at")),
                    _fmt(r.seconds("fault_at", "verified_at")),
                    "[green]yes[/]" if r.ok else "[red]no[/]",
                )
            console.print(table)
            shown = next((r for r in reversed(results) if r.ticket_key and r.expect != "healed"), None)
            shown = shown or next((r for r in reversed(results) if r.ticket_key), None)
            if shown is not None:
                path = save_ticket(stack, runner, shown.ticket_key, ticket_dir.resolve())
                console.print(f"ticket page of {shown.ticket_key} ({shown.title}) saved: {path}")
            failed = [r for r in results if not r.ok]
            learned = [
                r
                for r in results
                if r.expect == "escalated" and r.ok and r.outcome == "healed_after_approval"
            ]
            for r in learned:
                drafts = drafted_playbooks(stack, r.ticket_key)
                if not drafts:
                    r.ok, r.reason = (
                        False,
                        "healed by the approved revert, but no playbook was drafted from it",
                    )
                    failed.append(r)
                    continue
                out_dir = ticket_dir.resolve()
                out_dir.mkdir(parents=True, exist_ok=True)
                for name, data in drafts:
                    saved = out_dir / Path(name).name
                    saved.write_bytes(data)
                    console.print(
                        f"the loop learned: playbook drafted from {r.ticket_key}'s approved revert"
                        f" saved: {saved} (mode approve; merged into a playbook dir, the next incident"
                        " of this shape matches it)",
                        soft_wrap=True,
                    )
            for r in failed:
                console.print(f"[red]{r.scenario}:[/] {r.reason}", soft_wrap=True)
            elapsed = time.monotonic() - t0
            if failed:
                console.print(f"[bold red]demo failed[/] ({len(failed)} scenario(s)); logs: {stack.logs}")
            else:
                console.print(f"[bold green]demo passed[/]: {len(results)} scenarios in {elapsed:.0f}s")
            code = 0 if not failed else 1
        except KeyboardInterrupt:
            console.print("interrupted: stopping everything…")
            code = 130
        except Exception as err:
            console.print(f"[bold red]demo failed:[/] {err}\nlogs: {stack.logs}", soft_wrap=True)
            code = 1
        finally:
            # A second Ctrl-C must not leave children behind: finish stopping first.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                with console.status("stopping…"):
                    stack.stop()
            finally:
                signal.signal(signal.SIGINT, previous)
            console.print("stopped: every process the demo started has exited")
            if own_dir and code == 0:
                shutil.rmtree(root, ignore_errors=True)
            elif own_dir:
                console.print(f"data and logs kept in {root}")
    return code


def _wait_for_human(stack: Any, runner: Any, view: dict[str, Any], timeout: float = 900) -> None:
    console.print(
        "Decide as the on-call, in another terminal:\n"
        f"  SELFHEAL_CONFIG={stack.config_file} selfheal approve {view['id']} --comment '…'\n"
        f"  SELFHEAL_CONFIG={stack.config_file} selfheal reject {view['id']} --comment '…'\n"
        f'(ticket: curl -H "Authorization: Bearer $(cat {stack.data_dir / "api-token"})"'
        f" {stack.api_url}/api/v1/tickets/{view['ticket']['key']})",
        soft_wrap=True,
        highlight=False,
    )
    deadline = time.monotonic() + timeout
    with console.status("waiting for your decision…"):
        while time.monotonic() < deadline:
            if runner.view(view["id"])["stage"] != "awaiting_decision":
                return
            time.sleep(0.5)
