"""`make demo`: the real loop on the embedded stack, end to end, then a clean stop.

Starts Temporal (SQLite), the worker and the API as `selfheal dev` does, posts an Alertmanager
notification, shows the incident escalated with its LOCAL ticket, approves it, and exits 0 only
if every step ended as expected.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from selfheal.dev import DevStack
from selfheal.devserver import DevServerError, free_port

console = Console()


def demo_payload(now: datetime) -> dict[str, Any]:
    """A notification as Alertmanager 0.25+ sends it for a checkout error-ratio page."""
    starts = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    labels = {
        "alertname": "HighErrorRatio",
        "service": "checkout",
        "namespace": "shop",
        "severity": "critical",
        "job": "checkout",
    }
    return {
        "receiver": "selfheal",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {**labels, "instance": f"10.0.3.{i}:8080"},
                "annotations": {
                    "summary": "checkout 5xx ratio above 5% for 5m",
                    "description": "sum(rate(http_requests_total{code=~'5..'}[5m])) / sum(rate(...)) = 0.12",
                    "runbook_url": "https://runbooks.example.com/checkout/HighErrorRatio",
                },
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=job%3Acheckout_errors%3Aratio5m+%3E+0.05",
                "fingerprint": f"c0ffee00{i:08x}",
            }
            for i in (11, 12)
        ],
        "groupLabels": {"alertname": "HighErrorRatio", "service": "checkout"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "checkout 5xx ratio above 5% for 5m"},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRatio", service="checkout"}',
        "truncatedAlerts": 0,
    }


class DemoFailed(Exception):
    pass


def _wait(
    http: httpx.Client,
    incident_id: str,
    pred: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    with console.status(f"waiting: {what}"):
        while time.monotonic() < deadline:
            resp = http.get(f"/api/v1/incidents/{incident_id}")
            if resp.status_code == 200:
                last = resp.json()
                if pred(last):
                    return last
            time.sleep(0.2)
    raise DemoFailed(f"{what}: not reached in {timeout:.0f}s (last stage {last.get('stage')!r})")


def _step(t0: float, text: str) -> None:
    console.print(f"[dim]{time.monotonic() - t0:6.2f}s[/]  {text}", highlight=False)


def run_demo(data_dir: Path | None) -> int:
    from selfheal.cli import print_incident

    own_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="selfheal-demo-")) if data_dir is None else data_dir
    stack = DevStack(root, port=free_port(), temporal_port=free_port(), ui_port=free_port())
    t0 = time.monotonic()
    try:
        with console.status("starting Temporal dev server (SQLite), worker and API…"):
            stack.start()
            stack.wait_ready()
        _step(t0, f"embedded stack up: API {stack.api_url}, Temporal UI {stack.temporal.ui_url}")
        headers = {"Authorization": f"Bearer {stack.token}"}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as http:
            payload = demo_payload(datetime.now(UTC))
            resp = http.post("/api/v1/alerts", json=payload)
            if resp.status_code != 202:
                raise DemoFailed(f"webhook answered {resp.status_code}: {resp.text}")
            incident_id = resp.json()["incident_id"]
            _step(t0, f"Alertmanager notification accepted → incident [bold]{incident_id}[/]")
            again = http.post("/api/v1/alerts", json=payload).json()["incident_id"]
            if again != incident_id:
                raise DemoFailed("a resend opened a second incident")
            _step(t0, "resend (as Alertmanager's repeat or an HA peer would) landed in the same incident")

            view = _wait(http, incident_id, lambda v: v["stage"] == "awaiting_decision", "escalation")
            key = view["ticket"]["key"]
            _step(t0, f"ticket {key} opened and escalated; awaiting a human decision")
            ticket = http.get(f"/api/v1/tickets/{key}").json()
            console.print(
                Panel(
                    Text(
                        f"{ticket['summary']}\npriority {ticket['priority']} · status {ticket['status']}"
                        f" · labels {', '.join(ticket['labels'])}\n\n{ticket['description']}"
                    ),
                    title=f"{key} (local tracker)",
                    expand=False,
                )
            )

            resp = http.post(
                f"/api/v1/incidents/{incident_id}/decision",
                json={"decision": "approve", "by": "demo-oncall", "comment": "acknowledged by the demo"},
            )
            if resp.status_code != 200:
                raise DemoFailed(f"decision answered {resp.status_code}: {resp.text}")
            _step(t0, "approved by demo-oncall (API; the same as `selfheal approve` or a Jira comment)")
            view = _wait(http, incident_id, lambda v: v["stage"] == "closed", "closing")
            if view["outcome"] != "approved":
                raise DemoFailed(f"unexpected outcome {view['outcome']}")
            _step(t0, f"incident closed: {view['outcome']}")
            print_incident(view, console)
            ticket = http.get(f"/api/v1/tickets/{key}").json()
            if not any("Approved by demo-oncall" in c["body"] for c in ticket["comments"]):
                raise DemoFailed("the decision is missing from the ticket")
            _step(t0, f"ticket {key} carries {len(ticket['comments'])} comments, the decision included")
        console.print("[bold green]demo passed[/]")
        return 0
    except (DemoFailed, DevServerError, httpx.HTTPError) as err:
        console.print(f"[bold red]demo failed:[/] {err}\nlogs: {root / 'logs'}")
        return 1
    finally:
        with console.status("stopping…"):
            stack.stop()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
