"""Replay committed workflow histories so a change to IncidentWorkflow or ControlWorkflow cannot
silently break runs that are already going (`control-v1-updates.json` is the control workflow
from before grants were batched: one update per request). Re-record with SELFHEAL_RECORD_HISTORY=1 only when a
change is deliberately versioned (workflow.patched) and the old history still replays:
`SELFHEAL_RECORD_HISTORY=incident-v3-whatever pytest tests/workflows/test_replay.py -k fresh` adds a file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from connectors.local_tracker import LocalTracker
from models.incident import Decision, DecisionKind
from models.incident_state import IncidentInput, IncidentPolicySnapshot
from selfheal.settings import load_settings
from selfheal.worker import build_worker
from tests.support.payloads import am025, note, unique_group
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow

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
        await env.sleep(30)
        await handle.signal(IncidentWorkflow.notify, note(am025("partial", group)))
        await env.sleep(700)
        await handle.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.APPROVE, by="alice", source="jira")
        )
        await handle.result()
        history = await handle.fetch_history()
    return history.to_json()


async def test_committed_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no committed histories"
    replayer = Replayer(workflows=[IncidentWorkflow, ControlWorkflow], data_converter=pydantic_data_converter)
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)


async def test_fresh_history_replays(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    text = await record_history(time_env, tmp_path)
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("fresh", text))
    name = os.environ.get("SELFHEAL_RECORD_HISTORY")
    if name:
        target = HISTORIES / f"{name}.json"
        assert not target.exists(), f"{target} exists: committed histories are never overwritten"
        target.write_text(text)
        pytest.skip(f"history recorded as {target.name}")
