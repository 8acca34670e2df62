"""Diagnose chooses among the playbooks that match one alert, inside the incident workflow.

The real worker (activities included) runs against a real Prometheus scraping a target the test
sets: two playbooks match the same alert, the first one's diagnose does not hold, the second one's
`from: query` param is read from Prometheus and it runs. The history of the choice replays.
`SELFHEAL_RECORD_HISTORY=incident-v6-diagnose-choice pytest tests/workflows/test_diagnose_choice.py -k
second_runs` records it for the committed replay set (tests/workflows/histories/).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from connectors.local_tracker import LocalTracker
from connectors.prometheus import PrometheusClient
from demo.observability import prometheus_server
from models.incident import Decision, DecisionKind, IncidentView, Stage
from playbooks.loader import load_playbooks
from playbooks.render import render_param_query
from selfheal.settings import load_settings
from selfheal.worker import build_worker
from tests.support.incidents import start_incident, view_when
from tests.support.metric_target import MetricTarget
from tests.support.payloads import simple, unique_group
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

pytestmark = pytest.mark.timeout(180)

HISTORIES = Path(__file__).parent / "histories"

#: Checked first (priority 10): is the crash an OOM kill?
OOM = """\
apiVersion: selfheal/v1
kind: Playbook
name: crash-oom
description: The service was OOM-killed; raise its memory
match:
  alertname: ALERTNAME
  priority: 10
target: "{{ params.service }}"
params:
  service: {from: label, key: service, pattern: '^[a-z0-9-]{1,63}$'}
policy: {mode: auto, cooldown: 0s, require_firing: false}
diagnose:
  - name: oom killed
    query: 'demo_oom_kills{service="{{ params.service }}"}'
    condition: '> 0'
fix:
  - command: {argv: [touch, "oom-{{ params.service }}"]}
"""

#: The other sub-pattern: a bad rollout of the service's deployment, found through a query.
ROLLOUT = """\
apiVersion: selfheal/v1
kind: Playbook
name: crash-rollout
description: The service crashes since a rollout; undo it
match:
  alertname: ALERTNAME
target: "{{ params.deployment }}"
params:
  service: {from: label, key: service, pattern: '^[a-z0-9-]{1,63}$'}
  deployment:
    from: query
    query: 'max by (deployment) (demo_owner{service="{{ params.service }}"})'
    key: deployment
    pattern: '^[a-z0-9-]{1,63}$'
policy: {mode: auto, cooldown: 0s, require_firing: false}
diagnose:
  - name: rolled out recently
    query: 'demo_rollouts{deployment="{{ params.deployment }}"}'
    condition: '> 0'
fix:
  - command: {argv: [touch, "undone-{{ params.deployment }}"]}
"""


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, MetricTarget]]:
    with MetricTarget() as target, prometheus_server(tmp_path_factory.mktemp("prom"), [target.url]) as url:
        yield url, target


async def scraped(url: str, query: str) -> None:
    """Wait until Prometheus has the series the test just set (a condition with a deadline)."""
    deadline = asyncio.get_running_loop().time() + 30
    with PrometheusClient(url, timeout=5) as client:
        while not await asyncio.to_thread(client.series_labels, query):
            assert asyncio.get_running_loop().time() < deadline, f"Prometheus never had {query}"
            await asyncio.sleep(0.2)


async def run_incident(
    env: WorkflowEnvironment, tmp_path: Path, prom_url: str, service: str, alertname: str
) -> tuple[Any, WorkflowHandle[Any, Any], LocalTracker, Any]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    for name, text in (("oom", OOM), ("rollout", ROLLOUT)):
        (playbooks / f"{name}.yaml").write_text(text.replace("ALERTNAME", alertname))
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path / "data"),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={
            "include_library": False,
            "playbook_dirs": [str(playbooks)],
            "prometheus_url": prom_url,
        },
    )
    tracker = LocalTracker(settings.local_db_path)
    worker = build_worker(env.client, settings, tracker)
    payload = simple(group=unique_group(), alertname=alertname, service=service)
    await worker.__aenter__()
    handle = await start_incident(env.client, settings.temporal.task_queue, payload, suffix="choice")
    return settings, handle, tracker, worker


def events(view: IncidentView, kind: str) -> list[str]:
    return [e.message for e in view.timeline if e.kind == kind]


async def test_first_ruled_out_by_diagnose_and_the_second_runs(
    time_env: WorkflowEnvironment, tmp_path: Path, prom: tuple[str, MetricTarget]
) -> None:
    url, target = prom
    service = "svc-" + uuid.uuid4().hex[:8]
    deployment = f"{service}-web"
    target.set("demo_oom_kills", 0, service=service)
    target.set("demo_owner", 1, service=service, deployment=deployment)
    target.set("demo_rollouts", 1, deployment=deployment)
    await scraped(url, f'demo_rollouts{{deployment="{deployment}"}}')
    await scraped(url, f'demo_oom_kills{{service="{service}"}}')

    settings, handle, tracker, worker = await run_incident(time_env, tmp_path, url, service, "CrashLoop")
    try:
        view: IncidentView = await handle.result()
        history = await handle.fetch_history()
    finally:
        await worker.__aexit__(None, None, None)

    assert view.outcome == "healed", [(e.kind, e.message) for e in view.timeline]
    data = settings.data_dir / "scratch" / view.id  # a repo-less command's own directory
    assert (data / f"undone-{deployment}").exists(), "the second playbook ran, with the queried param"
    assert not (data / f"oom-{service}").exists(), "the first one never ran"
    assert [r.playbook for r in view.remediations] == ["crash-rollout"]
    assert view.proposal is not None and view.proposal.target == deployment
    assert view.proposal.params == {"service": service, "deployment": deployment}
    ruled_out = events(view, "playbook_ruled_out")
    assert ruled_out == [
        "playbook crash-oom ruled out: diagnose did not confirm the pattern:"
        " oom killed: [0.0] > 0 → does not hold"
    ]
    assert events(view, "playbook_matched") == [
        f"playbook crash-rollout applies (auto) on {deployment},"
        " chosen by diagnose after ruling out crash-oom"
    ]
    kinds = [e.kind for e in view.timeline]
    assert kinds.index("playbook_ruled_out") < kinds.index("playbook_matched") < kinds.index("closed")
    assert view.investigation is not None and view.investigation.matched_playbook == "crash-rollout"

    assert view.ticket is not None
    comments = [c["body"] for c in tracker.get(view.ticket.key)["comments"]]
    choice = next(c for c in comments if "Diagnose tried the matching playbooks" in c)
    assert "- crash-oom: ruled out: diagnose did not confirm the pattern: oom killed: [0.0] > 0" in choice
    assert "- crash-rollout: confirmed (auto); it is the one used." in choice

    replayer = Replayer(
        workflows=[IncidentWorkflow, RemediationWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
    name = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
    if name == "incident-v6-diagnose-choice":
        path = HISTORIES / f"{name}.json"
        assert not path.exists(), f"{path} exists: committed histories are never overwritten"
        path.write_text(history.to_json())


async def test_none_confirmed_escalates_with_every_reason(
    time_env: WorkflowEnvironment, tmp_path: Path, prom: tuple[str, MetricTarget]
) -> None:
    url, target = prom
    service = "svc-" + uuid.uuid4().hex[:8]
    target.set("demo_oom_kills", 0, service=service)  # and no demo_owner series: nothing to resolve
    await scraped(url, f'demo_oom_kills{{service="{service}"}}')

    settings, handle, _, worker = await run_incident(time_env, tmp_path, url, service, "CrashLoopB")
    try:
        view = await view_when(handle, lambda v: v.stage == Stage.AWAITING_DECISION)
        await handle.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.REJECT, by="alice", source="api")
        )
        await handle.result()
    finally:
        await worker.__aexit__(None, None, None)

    assert [e.split(":")[0] for e in events(view, "playbook_ruled_out")] == [
        "playbook crash-oom ruled out",
        "playbook crash-rollout ruled out",
    ]
    (unconfirmed,) = events(view, "playbook_unconfirmed")
    assert unconfirmed.startswith("diagnose confirmed none of the matching playbooks: crash-oom: ")
    assert "oom killed: [0.0] > 0 → does not hold" in unconfirmed
    query = f'max by (deployment) (demo_owner{{service="{service}"}})'
    assert f"crash-rollout: param deployment: query {query!r} returned no result" in unconfirmed
    # As for a single playbook whose diagnose fails: a skipped run, the first one proposed, humans asked.
    assert [(r.playbook, r.outcome) for r in view.remediations] == [("crash-oom", "skipped")]
    assert view.proposal is not None and view.proposal.playbook == "crash-oom"
    assert "escalated" in [e.kind for e in view.timeline]
    assert not list(settings.data_dir.glob("**/oom-*")) and not list(settings.data_dir.glob("**/undone-*"))


async def test_escaped_values_make_queries_prometheus_accepts(
    tmp_path: Path, prom: tuple[str, MetricTarget]
) -> None:
    """What the escaping produces is one valid string literal to Prometheus itself: it parses, and
    selects nothing rather than whatever an injected `or` would have added."""
    url, target = prom
    target.set("demo_owner", 1, service="evil", deployment="evil")
    await scraped(url, 'demo_owner{service="evil"}')
    (tmp_path / "p.yaml").write_text(ROLLOUT.replace("ALERTNAME", "Any"))
    playbook = load_playbooks([tmp_path], include_library=False).by_name["crash-rollout"]
    with PrometheusClient(url, timeout=5) as client:
        for hostile in ('x"} or demo_owner{service="evil', "x\\", 'a\\"b', "{{ 7*7 }}"):
            promql = render_param_query(
                playbook,
                "deployment",
                params={"service": hostile},
                fingerprint="f",
                status="firing",
                starts_at=datetime.now(UTC),
            )
            assert await asyncio.to_thread(client.series_labels, promql) == [], promql
