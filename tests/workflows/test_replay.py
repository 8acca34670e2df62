"""Replay committed workflow histories so a change to IncidentWorkflow, RemediationWorkflow or
ControlWorkflow cannot silently break runs that are already going (`control-v1-updates.json` is the
control workflow from before grants were batched: one update per request). Record a new one only
when a change is deliberately versioned (workflow.patched) and the old histories still replay:
`SELFHEAL_RECORD_HISTORY=incident-v6-whatever pytest tests/workflows/test_replay.py -k fresh` adds an incident
history, `SELFHEAL_RECORD_HISTORY=remediation-v2-whatever ...` a remediation one, `heal-v1-whatever`
the incident that ran that remediation (the name's first word picks the recording).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from connectors.local_tracker import LocalTracker
from models import ids
from models.incident import Decision, DecisionKind, Stage
from models.incident_state import IncidentInput, IncidentPolicySnapshot
from selfheal.settings import load_settings
from selfheal.worker import build_worker
from tests.support.incidents import start_incident, view_when
from tests.support.payloads import am025, note, simple, unique_group
from tests.support.services import skip_time
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record_history(env: WorkflowEnvironment, tmp_path: Path) -> str:
    """A full incident: firing, partial resolution, a re-escalation, then a Jira-style approval."""
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={"include_library": False},
    )
    tracker = LocalTracker(settings.local_db_path)
    group = unique_group()
    gid = uuid.uuid4().hex[:12]
    async with build_worker(env.client, settings, tracker):
        handle = await env.client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(
                incident_id=f"{gid}-replay",
                group_id=gid,
                policy=IncidentPolicySnapshot(decision_timeout_seconds=600, max_reescalations=1),
            ),
            id=f"incident-{gid}",
            task_queue=settings.temporal.task_queue,
            start_signal="notify",
            start_signal_args=[note(am025("firing", group))],
        )
        await skip_time(env, 30)
        await handle.signal(IncidentWorkflow.notify, note(am025("partial", group)))
        await skip_time(env, 700)
        await handle.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.APPROVE, by="alice", source="jira")
        )
        await handle.result()
        history = await handle.fetch_history()
    return history.to_json()


REMEDIATION_PLAYBOOK = """\
apiVersion: selfheal/v1
kind: Playbook
name: replay-pool-raise
description: Raise the connection pool of the alerting service
match:
  alertname: ReplayPoolExhausted
  matchers: ['service=~".+"']
target: "{{ params.service }}"
repo: config
params:
  service: {from: label, key: service, pattern: "^[a-z0-9-]{1,63}$"}
policy: {mode: auto, max_runs: 10, window: 1h, cooldown: 0s, require_firing: false}
fix:
  - git_edit: {file: "services/{{ params.service }}/config.yaml", key: pool.size, scale: 4, max_value: 100}
test:
  - command: {argv: [grep, -q, "size: 20", "services/{{ params.service }}/config.yaml"], timeout: 60s}
deploy:
  - git_push: {branch: main}
rollback: auto
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


async def record_remediation_history(env: WorkflowEnvironment, tmp_path: Path) -> tuple[str, str]:
    """A real fix of a git config repo (worktree, edit, commit, sandboxed test, push), run by an
    `auto` playbook from an incident; the histories of its RemediationWorkflow child and of the
    incident itself (the heal path)."""
    service = "svc-" + uuid.uuid4().hex[:8]
    remote, seed, work = tmp_path / "remote.git", tmp_path / "seed", tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    config = seed / "services" / service / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("pool:\n  size: 5\n")
    _git(tmp_path, "init", "-q", "-b", "main", str(seed))
    _git(seed, "add", ".")
    _git(seed, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "config")
    _git(seed, "push", "-q", str(remote), "main:main")
    _git(tmp_path, "clone", "-q", "-b", "main", str(remote), str(work))
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "replay-pool-raise.yaml").write_text(REMEDIATION_PLAYBOOK)
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path / "data"),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={
            "include_library": False,
            "playbook_dirs": [str(playbooks)],
            "repos": {"config": {"path": str(work)}},
        },
    )
    tracker = LocalTracker(settings.local_db_path)
    payload = simple(group=unique_group(), alertname="ReplayPoolExhausted", service=service)
    async with build_worker(env.client, settings, tracker):
        handle = await start_incident(env.client, settings.temporal.task_queue, payload, suffix="replay")
        view = await handle.result()
        assert view.outcome == "healed", [(e.kind, e.message) for e in view.timeline]
        history = await env.client.get_workflow_handle(ids.remediation_workflow_id(service)).fetch_history()
        incident = await handle.fetch_history()
    return history.to_json(), incident.to_json()


def _commit_at(repo: Path, files: dict[str, str], message: str, when: datetime) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    stamp = f"@{int(when.timestamp())} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    subprocess.run(["git", "add", "."], cwd=repo, check=True, capture_output=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


async def record_proposal_history(env: WorkflowEnvironment, tmp_path: Path) -> str:
    """A novel incident whose investigation names the commit just before it: the revert is planned
    with the service's defaults, approved with the plan's digest and run (no Prometheus here, so
    verify fails and the fix is rolled back), escalated again, then rejected."""
    service = "svc-" + uuid.uuid4().hex[:8]
    remote, seed, work = tmp_path / "remote.git", tmp_path / "seed", tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(tmp_path, "init", "-q", "-b", "main", str(seed))
    starts = datetime.now(UTC).replace(microsecond=0)
    config = f"services/{service}/config.yaml"
    _commit_at(seed, {config: "pool:\n  size: 20\n"}, "config", starts - timedelta(hours=3))
    bad = _commit_at(
        seed, {config: "pool:\n  size: 2\n"}, "pool: save connections", starts - timedelta(seconds=5)
    )
    _git(seed, "push", "-q", str(remote), "main:main")
    _git(tmp_path, "clone", "-q", "-b", "main", str(remote), str(work))
    defaults = {
        "repo": "config",
        "test": [{"command": {"argv": ["grep", "-q", "size:", "services/{{ params.service }}/config.yaml"]}}],
        "deploy": [{"git_push": {"branch": "main"}}],
        "verify": {"hold_for": "1s", "timeout": "10s"},
    }
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path / "data"),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={
            "include_library": False,
            "repos": {"config": {"path": str(work)}},
            "services": {service: defaults},
        },
        evidence={
            "change_repos": {"config": str(remote)},
            "default_service": {"paths": ["services/{service}/**"]},
        },
    )
    tracker = LocalTracker(settings.local_db_path)
    payload = simple(group=unique_group(), alertname="ReplayNovelLatency", service=service)
    payload["alerts"][0]["startsAt"] = starts.isoformat()
    async with build_worker(env.client, settings, tracker):
        handle = await start_incident(env.client, settings.temporal.task_queue, payload, suffix="replay")
        view = await view_when(handle, lambda v: v.stage == Stage.AWAITING_DECISION)
        assert view.proposal is not None and view.proposal.kind == "revert", view.timeline
        assert view.proposal.steps[0] == f"revert commit {bad[:12]}"
        await handle.execute_update(
            IncidentWorkflow.decide,
            Decision(decision=DecisionKind.APPROVE, by="alice", plan_digest=view.proposal.digest),
        )
        view = await view_when(handle, lambda v: v.stage == Stage.AWAITING_DECISION and bool(v.remediations))
        assert view.remediations[-1].outcome == "rolled_back", view.remediations
        await handle.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.REJECT, by="alice")
        )
        await handle.result()
        history = await handle.fetch_history()
    return history.to_json()


async def test_committed_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no committed histories"
    assert any(f.name.startswith("remediation-") for f in files), "no committed remediation history"
    replayer = Replayer(
        workflows=[IncidentWorkflow, RemediationWorkflow, ControlWorkflow],
        data_converter=pydantic_data_converter,
    )
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)


def _keep(kind: str, text: str) -> None:
    """Commit the fresh history when SELFHEAL_RECORD_HISTORY names one of this kind."""
    name = os.environ.get("SELFHEAL_RECORD_HISTORY")
    if name and name.startswith(f"{kind}-"):
        target = HISTORIES / f"{name}.json"
        assert not target.exists(), f"{target} exists: committed histories are never overwritten"
        target.write_text(text)
        pytest.skip(f"history recorded as {target.name}")


async def test_fresh_history_replays(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    text = await record_history(time_env, tmp_path)
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("fresh", text))
    _keep("incident", text)


async def test_fresh_remediation_history_replays(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    text, incident = await record_remediation_history(time_env, tmp_path)
    replayer = Replayer(
        workflows=[RemediationWorkflow, IncidentWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(WorkflowHistory.from_json("fresh-remediation", text))
    await replayer.replay_workflow(WorkflowHistory.from_json("fresh-heal", incident))
    _keep("remediation", text)
    _keep("heal", incident)


async def test_fresh_proposal_history_replays(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Record with `SELFHEAL_RECORD_HISTORY=incident-v7-… pytest … -k fresh_proposal`."""
    text = await record_proposal_history(time_env, tmp_path)
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("fresh-proposal", text))
    _keep("incident", text)
