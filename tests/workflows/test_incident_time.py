"""IncidentWorkflow timing on the time-skipping server: re-escalation, quiet period, history compaction."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from connectors.local_tracker import LocalTracker
from models.incident import Decision, DecisionKind
from models.incident_state import IncidentPolicySnapshot
from selfheal.settings import load_settings
from selfheal.worker import build_worker
from tests.support.incidents import start_incident
from tests.support.payloads import note, simple
from tests.support.services import skip_time
from workflows.incident import IncidentWorkflow


async def start(
    env: WorkflowEnvironment, tq: str, policy: IncidentPolicySnapshot, payload: dict[str, Any]
) -> Any:
    return await start_incident(env.client, tq, payload, policy, "aaaaaa")


def tracker_and_settings(tmp_path: Path) -> tuple[LocalTracker, Any]:
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={"include_library": False},
    )
    return LocalTracker(settings.local_db_path), settings


async def test_decision_timeout_reescalates_with_rising_priority(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    tracker, settings = tracker_and_settings(tmp_path)
    policy = IncidentPolicySnapshot(decision_timeout_seconds=1800, max_reescalations=2)
    async with build_worker(time_env.client, settings, tracker):
        handle: WorkflowHandle[Any, Any] = await start(
            time_env, settings.temporal.task_queue, policy, simple(severity="warning")
        )
        await skip_time(time_env, 60)
        view = await handle.query(IncidentWorkflow.view)
        assert view.stage == "awaiting_decision" and view.escalations == 0
        key = view.ticket.key
        assert tracker.get(key)["priority"] == "High"

        await skip_time(time_env, 1800)
        view = await handle.query(IncidentWorkflow.view)
        assert view.escalations == 1
        assert tracker.get(key)["priority"] == "Highest"

        await skip_time(time_env, 3 * 1800)
        view = await handle.query(IncidentWorkflow.view)
        kinds = [e.kind for e in view.timeline]
        assert kinds.count("reescalated") == 2
        assert "reescalation_limit" in kinds
        assert view.stage == "awaiting_decision", "keeps waiting after the last re-escalation"
        escalation_comments = [c for c in tracker.get(key)["comments"] if c["body"].startswith("Escalated")]
        assert len(escalation_comments) == 3

        result = await handle.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.REJECT, by="oncall", source="test")
        )
        assert result.decision.by == "oncall"
        final = await handle.result()
        assert final.stage == "closed" and final.outcome == "rejected"


async def test_resolution_waits_for_quiet_period(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    tracker, settings = tracker_and_settings(tmp_path)
    policy = IncidentPolicySnapshot(resolve_quiet_seconds=600)
    payload = simple()
    async with build_worker(time_env.client, settings, tracker):
        handle = await start(time_env, settings.temporal.task_queue, policy, payload)
        await skip_time(time_env, 5)
        resolved = simple("resolved", group=None)
        resolved["groupKey"] = payload["groupKey"]
        await handle.signal(IncidentWorkflow.notify, note(resolved))
        await skip_time(time_env, 300)
        view = await handle.query(IncidentWorkflow.view)
        assert view.status == "resolved" and view.stage == "awaiting_decision"
        await skip_time(time_env, 400)
        final = await handle.result()
        assert final.outcome == "resolved"
        assert tracker.get(final.ticket.key)["status"] == "Done"


async def test_long_incident_continues_as_new_keeping_state(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    tracker, settings = tracker_and_settings(tmp_path)
    policy = IncidentPolicySnapshot(continue_as_new_after_events=100)
    payload = simple()
    async with build_worker(time_env.client, settings, tracker):
        handle = await start(time_env, settings.temporal.task_queue, policy, payload)
        first_run = handle.result_run_id
        for i in range(40):
            flap = simple("resolved" if i % 2 == 0 else "firing")
            flap["groupKey"] = payload["groupKey"]
            await handle.signal(IncidentWorkflow.notify, note(flap))
            await skip_time(time_env, 1)
        latest = time_env.client.get_workflow_handle(handle.id)
        view = await latest.query(IncidentWorkflow.view)
        desc = await latest.describe()
        assert desc.run_id != first_run, "history was compacted with continue-as-new"
        assert view.notifications == 41
        assert view.ticket is not None and tracker.count() == 1
        assert any(e.kind == "continued" for e in view.timeline)
        await latest.execute_update(
            IncidentWorkflow.decide, Decision(decision=DecisionKind.APPROVE, by="oncall", source="test")
        )
        final = await time_env.client.get_workflow_handle_for(IncidentWorkflow.run, handle.id).result()
        assert final.outcome == "approved" and final.id == view.id
